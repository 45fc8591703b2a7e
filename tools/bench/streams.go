package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
)

// streamsRoot begins the stream prefix of every run.
const streamsRoot = "orderstream-bench:"

// streamPrefix is the STREAM_PREFIX of one measurement.
func (s *stage) streamPrefix(phase string) string { return s.prefix + phase + ":" }

// clearStreams deletes every key under prefix.
func (s *stage) clearStreams(ctx context.Context, prefix string) error {
	iter := s.rdb.Scan(ctx, 0, prefix+"*", 1000).Iterator()
	var keys []string
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	if err := iter.Err(); err != nil {
		return fmt.Errorf("list streams: %w", err)
	}
	if len(keys) == 0 {
		return nil
	}
	// UNLINK frees a large stream in the background instead of blocking
	// Redis while the next measurement starts.
	if err := s.rdb.Unlink(ctx, keys...).Err(); err != nil {
		return fmt.Errorf("delete streams: %w", err)
	}
	return nil
}

// needRedis7 refuses a Redis older than 7: the worker's progress is read
// from XINFO GROUPS' entries-read and lag, which came with Redis 7.0.
func (s *stage) needRedis7(ctx context.Context) error {
	info, err := s.rdb.InfoMap(ctx, "server").Result()
	if err != nil {
		return fmt.Errorf("read Redis version: %w", err)
	}
	v := info["Server"]["redis_version"]
	major, _, _ := strings.Cut(v, ".")
	if n, err := strconv.Atoi(major); err != nil || n < 7 {
		return fmt.Errorf("check Redis version: the worker measurement needs Redis 7 or later, found %s", v)
	}
	return nil
}

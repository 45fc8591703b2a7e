// Package redisstreams is the Redis Streams plumbing: which Redis REDIS_URL
// names (one server, a master that Sentinels watch, or a Cluster), Watermill
// publishers that can wait for replicas, the consumer-group subscriber that
// replaces watermill-redisstream's (it stops without abandoning the entries
// it holds), the dead-letter stream and its replay, the streams' status
// (lag, pending) and trimming, and the durability check of the server.
package redisstreams

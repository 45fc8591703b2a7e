package redisstreams

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// The default ports of the hosts of a URL that names none.
const (
	defaultServerPort   = "6379"
	defaultSentinelPort = "26379"
)

// ParseURL reads REDIS_URL: the one place that knows its forms, so that
// every client of the process (publishers, subscribers, the reads) reaches
// the same Redis, whichever kind it is.
//
//	redis://[[user]:password@]host[:port][/db][?option=value&…]    one server, as redis.ParseURL reads it
//	rediss://…                                                    the same over TLS
//	unix://[[user]:password@]/path/to/redis.sock[?db=N&…]          one server on a Unix socket
//	redis-sentinel://[[user]:password@]host[:port][,host[:port]…][/db]?master=NAME[&…]
//	rediss-sentinel://…                                           the same over TLS
//	redis-cluster://[[user]:password@]host[:port][,host[:port]…][?…]
//	rediss-cluster://…                                            the same over TLS
//
// The hosts of a Sentinel URL are the Sentinels (port 26379 by default); its
// user and password are the master's, and sentinel_username and
// sentinel_password, when the Sentinels want them, theirs. The hosts of a
// Cluster URL are seeds (port 6379 by default): the client learns the other
// nodes from them; a cluster has only database 0. Every form takes the
// tuning options of redis.ParseURL (dial_timeout, read_timeout, pool_size,
// max_retries, …); a Cluster URL also max_redirects. Over TLS to Sentinels
// or a Cluster, each server's certificate is checked against the name it is
// reached by.
//
// Unknown options, missing hosts and bad ports are errors, and no error
// repeats the URL: it may hold a password.
func ParseURL(raw string) (*redis.UniversalOptions, error) {
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return nil, errors.New("parse redis URL: no scheme: want redis://host:port/db, redis-sentinel://host:port,…?master=NAME or redis-cluster://host:port,…")
	}
	var (
		opts *redis.UniversalOptions
		err  error
	)
	switch scheme {
	case "redis", "rediss", "unix":
		opts, err = parseServerURL(raw)
	case "redis-sentinel", "rediss-sentinel":
		opts, err = parseSentinelURL(strings.TrimSuffix(scheme, "-sentinel"), rest)
	case "redis-cluster", "rediss-cluster":
		opts, err = parseClusterURL(strings.TrimSuffix(scheme, "-cluster"), rest)
	default:
		err = fmt.Errorf("unknown scheme %q: want redis, rediss, unix, redis-sentinel, rediss-sentinel, redis-cluster or rediss-cluster", scheme)
	}
	if err != nil {
		return nil, fmt.Errorf("parse redis URL: %w", err)
	}
	return opts, nil
}

// parseServerURL reads the URL of one server exactly as redis.ParseURL does,
// so that a REDIS_URL that worked before means what it meant.
func parseServerURL(raw string) (*redis.UniversalOptions, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, withoutURL(err)
	}
	q := u.Query()
	switch {
	case q.Has("addr"):
		return nil, errors.New("addr is no option of one server: a Redis Cluster is redis-cluster://host1:port1,host2:port2")
	case q.Has("master") || q.Has("master_name"):
		return nil, errors.New("a master watched by Sentinels is redis-sentinel://sentinel1:26379,sentinel2:26379/db?master=NAME")
	}
	o, err := redis.ParseURL(raw)
	if err != nil {
		return nil, withoutURL(err)
	}
	return universal(o, []string{o.Addr}), nil
}

// parseSentinelURL reads the rest of a Sentinel URL, after "redis-sentinel://".
func parseSentinelURL(scheme, rest string) (*redis.UniversalOptions, error) {
	p, err := splitHosts(rest, defaultSentinelPort)
	if err != nil {
		return nil, err
	}
	master := p.take("master")
	if master == "" {
		return nil, errors.New("a Sentinel URL needs the master's name: ?master=NAME (the name in the Sentinels' `sentinel monitor NAME …`)")
	}
	sentinelUser, sentinelPassword := p.take("sentinel_username"), p.take("sentinel_password")
	o, err := p.server(scheme)
	if err != nil {
		return nil, err
	}
	opts := universal(o, p.hosts)
	opts.MasterName = master
	opts.SentinelUsername, opts.SentinelPassword = sentinelUser, sentinelPassword
	return opts, nil
}

// parseClusterURL reads the rest of a Cluster URL, after "redis-cluster://".
func parseClusterURL(scheme, rest string) (*redis.UniversalOptions, error) {
	p, err := splitHosts(rest, defaultServerPort)
	if err != nil {
		return nil, err
	}
	redirects := p.take("max_redirects")
	o, err := p.server(scheme)
	if err != nil {
		return nil, err
	}
	if o.DB != 0 {
		return nil, fmt.Errorf("database %d: a Redis Cluster has only database 0", o.DB)
	}
	opts := universal(o, p.hosts)
	// A cluster client even with one seed: the seed tells it the rest.
	opts.IsClusterMode = true
	if redirects != "" {
		if opts.MaxRedirects, err = strconv.Atoi(redirects); err != nil {
			return nil, fmt.Errorf("max_redirects %q: want a whole number", redirects)
		}
	}
	return opts, nil
}

// hostsURL is a URL of several hosts taken apart: net/url reads one host
// only.
type hostsURL struct {
	userinfo string // "user:password@" as written, or ""
	hosts    []string
	path     string
	query    url.Values
}

// splitHosts takes "[userinfo@]host[:port],…[/path][?query]" apart, giving
// each host without a port defaultPort.
func splitHosts(rest, defaultPort string) (hostsURL, error) {
	var p hostsURL
	authority, tail := rest, ""
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		authority, tail = rest[:i], rest[i:]
	}
	if i := strings.LastIndex(authority, "@"); i >= 0 {
		p.userinfo, authority = authority[:i+1], authority[i+1:]
	}
	if strings.Contains(tail, "#") {
		return p, errors.New("a fragment (#…) is not part of a Redis URL")
	}
	path, query, _ := strings.Cut(tail, "?")
	p.path = path
	var err error
	if p.query, err = url.ParseQuery(query); err != nil {
		return p, fmt.Errorf("options: %w", err)
	}
	if authority == "" {
		return p, errors.New("no host: list them as host1:port1,host2:port2")
	}
	for _, h := range strings.Split(authority, ",") {
		addr, err := hostPort(h, defaultPort)
		if err != nil {
			return p, err
		}
		p.hosts = append(p.hosts, addr)
	}
	return p, nil
}

// hostPort checks one host of a list and gives it defaultPort when it has
// none. An IPv6 address is written in brackets: [::1]:26379.
func hostPort(h, defaultPort string) (string, error) {
	host, port := h, defaultPort
	if strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]") {
		host = h[1 : len(h)-1]
	} else if strings.Contains(h, ":") {
		var err error
		if host, port, err = net.SplitHostPort(h); err != nil {
			return "", fmt.Errorf("host %q: want host:port (an IPv6 address in brackets: [::1]:26379)", h)
		}
	}
	if host == "" || strings.ContainsAny(host, "[]/ ") {
		return "", fmt.Errorf("host %q: empty or malformed (hosts are separated by commas)", h)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return "", fmt.Errorf("host %q: port %q is not a number from 1 to 65535", h, port)
	}
	return net.JoinHostPort(host, port), nil
}

// take removes the option name from the query and returns its (last) value.
func (p hostsURL) take(name string) string {
	v := p.query[name]
	p.query.Del(name)
	if len(v) == 0 {
		return ""
	}
	return v[len(v)-1]
}

// server reads the credentials, database and tuning options as
// redis.ParseURL reads those of one server (the first host stands in for
// all), so that every form takes the same options and refuses the same
// unknown ones.
func (p hostsURL) server(scheme string) (*redis.Options, error) {
	one := scheme + "://" + p.userinfo + p.hosts[0] + p.path
	if len(p.query) > 0 {
		one += "?" + p.query.Encode()
	}
	o, err := redis.ParseURL(one)
	if err != nil {
		return nil, withoutURL(err)
	}
	if o.TLSConfig != nil {
		// Each node by the name it is dialled by, not by the first
		// host's: the master and the nodes a seed names are other hosts.
		o.TLSConfig.ServerName = ""
	}
	return o, nil
}

// universal carries every field that redis.ParseURL can set over to
// universal options for addrs.
func universal(o *redis.Options, addrs []string) *redis.UniversalOptions {
	return &redis.UniversalOptions{
		Addrs:                   addrs,
		ClientName:              o.ClientName,
		DB:                      o.DB,
		Protocol:                o.Protocol,
		Username:                o.Username,
		Password:                o.Password,
		MaxRetries:              o.MaxRetries,
		MinRetryBackoff:         o.MinRetryBackoff,
		MaxRetryBackoff:         o.MaxRetryBackoff,
		DialTimeout:             o.DialTimeout,
		DialerRetries:           o.DialerRetries,
		DialerRetryTimeout:      o.DialerRetryTimeout,
		ReadTimeout:             o.ReadTimeout,
		WriteTimeout:            o.WriteTimeout,
		ContextTimeoutEnabled:   o.ContextTimeoutEnabled,
		ReadBufferSize:          o.ReadBufferSize,
		WriteBufferSize:         o.WriteBufferSize,
		PipelineReadBufferSize:  o.PipelineReadBufferSize,
		PipelineWriteBufferSize: o.PipelineWriteBufferSize,
		PipelinePoolSize:        o.PipelinePoolSize,
		PoolFIFO:                o.PoolFIFO,
		PoolSize:                o.PoolSize,
		MaxConcurrentDials:      o.MaxConcurrentDials,
		PoolTimeout:             o.PoolTimeout,
		MinIdleConns:            o.MinIdleConns,
		MaxIdleConns:            o.MaxIdleConns,
		MaxActiveConns:          o.MaxActiveConns,
		ConnMaxIdleTime:         o.ConnMaxIdleTime,
		ConnMaxLifetime:         o.ConnMaxLifetime,
		ConnMaxLifetimeJitter:   o.ConnMaxLifetimeJitter,
		TLSConfig:               o.TLSConfig,
		DisableIdentity:         o.DisableIdentity,
		IdentitySuffix:          o.IdentitySuffix,
	}
}

// withoutURL drops the URL from a net/url error: it may hold a password.
func withoutURL(err error) error {
	if ue, ok := errors.AsType[*url.Error](err); ok {
		return ue.Err
	}
	return err
}

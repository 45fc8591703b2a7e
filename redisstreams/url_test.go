package redisstreams_test

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/orderstream/orderstream/redisstreams"
)

// TestParseURL_oneServerAsBefore: a URL of one server gives a client with
// exactly the options redis.ParseURL gave the client it replaces, tuning
// options, TLS and Unix sockets included.
func TestParseURL_oneServerAsBefore(t *testing.T) {
	t.Parallel()
	for _, u := range []string{
		"redis://localhost:6379/0",
		"redis://",
		"redis://127.0.0.1:6380/3",
		"redis://user:s3cret@127.0.0.1:6380/1?dial_timeout=3&read_timeout=6s&pool_size=7&max_retries=-1&client_name=os",
		"rediss://:s3cret@redis.example.com:6380/2?skip_verify=true",
		"unix://:s3cret@/run/redis/redis.sock?db=4",
	} {
		t.Run(u, func(t *testing.T) {
			t.Parallel()
			before, err := redis.ParseURL(u)
			if err != nil {
				t.Fatal(err)
			}
			opts, err := redisstreams.ParseURL(u)
			if err != nil {
				t.Fatalf("ParseURL(%q) = %v", u, err)
			}
			if opts.MasterName != "" || opts.IsClusterMode || len(opts.Addrs) != 1 {
				t.Fatalf("ParseURL(%q) = %+v, want one server", u, opts)
			}
			was, now := redis.NewClient(before), redis.NewUniversalClient(opts)
			defer was.Close()
			defer now.Close()
			c, ok := now.(*redis.Client)
			if !ok {
				t.Fatalf("client %T, want *redis.Client", now)
			}
			want, got := withoutFuncs(*was.Options()), withoutFuncs(*c.Options())
			if !reflect.DeepEqual(got, want) {
				t.Errorf("client options\n got %+v\nwant %+v", got, want)
			}
		})
	}
}

// withoutFuncs zeroes the function fields (dialers, hooks) and the
// interfaces (push notification processors), which each client makes for
// itself and DeepEqual cannot compare.
func withoutFuncs(o redis.Options) redis.Options {
	v := reflect.ValueOf(&o).Elem()
	for i := range v.NumField() {
		if f := v.Field(i); (f.Kind() == reflect.Func || f.Kind() == reflect.Interface) && f.CanSet() {
			f.Set(reflect.Zero(f.Type()))
		}
	}
	return o
}

func TestParseURL_sentinelAndCluster(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, url string
		want      redis.UniversalOptions
		tls       bool
		cluster   bool // a cluster client, not a one-server or failover one
	}{
		{
			name: "sentinels_with_master_and_database",
			url:  "redis-sentinel://:s3cret@10.0.0.1:26379,10.0.0.2:26380,sentinel-3/2?master=mymaster&dial_timeout=2s",
			want: redis.UniversalOptions{
				Addrs:      []string{"10.0.0.1:26379", "10.0.0.2:26380", "sentinel-3:26379"},
				MasterName: "mymaster", Password: "s3cret", DB: 2, DialTimeout: 2 * time.Second,
			},
		},
		{
			name: "sentinels_with_credentials_of_their_own",
			url:  "redis-sentinel://app:pw@[::1]:26379,[::1]?master=m&sentinel_username=sen&sentinel_password=spw&db=1",
			want: redis.UniversalOptions{
				Addrs:      []string{"[::1]:26379", "[::1]:26379"},
				MasterName: "m", Username: "app", Password: "pw", SentinelUsername: "sen", SentinelPassword: "spw", DB: 1,
			},
		},
		{
			name: "sentinels_over_tls",
			url:  "rediss-sentinel://s1.example.com?master=m",
			want: redis.UniversalOptions{Addrs: []string{"s1.example.com:26379"}, MasterName: "m"},
			tls:  true,
		},
		{
			name:    "cluster_seeds",
			url:     "redis-cluster://:s3cret@10.0.0.1:7000,10.0.0.2:7001,node-3?read_timeout=1s&max_redirects=5",
			want:    redis.UniversalOptions{Addrs: []string{"10.0.0.1:7000", "10.0.0.2:7001", "node-3:6379"}, Password: "s3cret", ReadTimeout: time.Second, MaxRedirects: 5, IsClusterMode: true},
			cluster: true,
		},
		{
			name:    "cluster_of_one_seed",
			url:     "redis-cluster://10.0.0.1:7000/0",
			want:    redis.UniversalOptions{Addrs: []string{"10.0.0.1:7000"}, IsClusterMode: true},
			cluster: true,
		},
		{
			name:    "cluster_over_tls",
			url:     "rediss-cluster://node-1.example.com:7000,node-2.example.com:7000?skip_verify=true",
			want:    redis.UniversalOptions{Addrs: []string{"node-1.example.com:7000", "node-2.example.com:7000"}, IsClusterMode: true},
			tls:     true,
			cluster: true,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := redisstreams.ParseURL(tc.url)
			if err != nil {
				t.Fatalf("ParseURL = %v", err)
			}
			switch {
			case tc.tls && got.TLSConfig == nil:
				t.Error("no TLS")
			case tc.tls && got.TLSConfig.ServerName != "":
				// Each node by the name it is dialled by: the Sentinels name
				// a master, the seeds other nodes.
				t.Errorf("TLS server name %q, want none", got.TLSConfig.ServerName)
			case !tc.tls && got.TLSConfig != nil:
				t.Error("TLS, want none")
			}
			got.TLSConfig = nil
			if !reflect.DeepEqual(*got, tc.want) {
				t.Errorf("ParseURL\n got %+v\nwant %+v", *got, tc.want)
			}
			rdb := redis.NewUniversalClient(got)
			defer rdb.Close()
			if _, isCluster := rdb.(*redis.ClusterClient); isCluster != tc.cluster {
				t.Errorf("client %T, want a cluster client: %v", rdb, tc.cluster)
			}
		})
	}
}

func TestParseURL_refusesBadInput(t *testing.T) {
	t.Parallel()
	cases := []struct{ name, url, want string }{
		{"empty", "", "no scheme"},
		{"no_scheme", "localhost:6379", "no scheme"},
		{"unknown_scheme", "http://:s3cret@localhost:6379", `unknown scheme "http"`},
		{"cluster_written_as_one_server", "redis://:s3cret@h1:7000?addr=h2:7001", "redis-cluster://"},
		{"sentinel_written_as_one_server", "redis://:s3cret@h1:26379?master_name=m", "redis-sentinel://"},
		{"bad_port_of_one_server", "redis://:s3cret@h1:port/0", "invalid port"},
		{"unknown_option_of_one_server", "redis://:s3cret@h1/0?pool=3", "unexpected option: pool"},
		{"sentinel_without_master", "redis-sentinel://:s3cret@h1:26379,h2:26379", "master=NAME"},
		{"sentinel_without_hosts", "redis-sentinel://:s3cret@/0?master=m", "no host"},
		{"empty_host_in_list", "redis-sentinel://:s3cret@h1:26379,,h2?master=m", `host ""`},
		{"port_not_a_number", "redis-sentinel://:s3cret@h1:port?master=m", `port "port"`},
		{"port_out_of_range", "redis-sentinel://:s3cret@h1:99999?master=m", "1 to 65535"},
		{"ipv6_without_brackets", "redis-sentinel://:s3cret@::1:26379?master=m", "brackets"},
		{"unknown_option_of_sentinel", "redis-sentinel://:s3cret@h1?master=m&bogus=1", "unexpected option: bogus"},
		{"bad_database_of_sentinel", "redis-sentinel://:s3cret@h1/x?master=m", "database"},
		{"cluster_database_not_zero", "redis-cluster://:s3cret@h1:7000/1", "only database 0"},
		{"cluster_bad_redirects", "redis-cluster://:s3cret@h1:7000?max_redirects=many", "max_redirects"},
		{"cluster_unknown_option", "redis-cluster://:s3cret@h1:7000?master=m", "unexpected option: master"},
		{"fragment", "redis-cluster://:s3cret@h1:7000#x", "fragment"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			opts, err := redisstreams.ParseURL(tc.url)
			if err == nil {
				t.Fatalf("ParseURL(%q) = %+v, want an error", tc.url, opts)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "parse redis URL: ") || !strings.Contains(msg, tc.want) {
				t.Errorf("error %q, want it to say %q", msg, tc.want)
			}
			if strings.Contains(msg, "s3cret") {
				t.Errorf("error %q repeats the password", msg)
			}
		})
	}
}

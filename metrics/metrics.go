// Package metrics defines orderstream's own Prometheus metrics and serves
// them. The ones read from PostgreSQL and Redis (the backlog) are set on a
// timer by the watcher of package live, so that a scrape never loads
// either.
package metrics

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/orderstream/orderstream/internal/buildinfo"
)

// Metrics are one process's metrics, in a registry of its own.
type Metrics struct {
	Registry *prometheus.Registry

	// BuildInfo is 1, labelled with the binary's version, VCS revision and
	// Go version ("unknown" where the build recorded none), so that a
	// dashboard can tell which build each process runs.
	BuildInfo *prometheus.GaugeVec // version, revision, goversion

	HTTPRequests    *prometheus.CounterVec   // method, route, code
	HTTPDuration    *prometheus.HistogramVec // method, route
	OrdersPlaced    prometheus.Counter
	OrdersCancelled prometheus.Counter
	OrderSettle     prometheus.Histogram
	InboxDuplicates *prometheus.CounterVec // handler
	// Messages that failed for a passing reason and were parked to be
	// tried again later, and those parked again after failing for longer
	// than the bound (see parked.Store).
	MessagesParked        *prometheus.CounterVec // handler
	MessagesParkedOverdue *prometheus.CounterVec // handler
	// Orders re-driven after staying unsettled past ORDER_SETTLE_TIMEOUT
	// (orders.Redriver), by outcome.
	OrdersRedriven *prometheus.CounterVec // outcome
	// Entries of the consumers' activity feed (package activity) that a
	// worker left out: over its rate, its buffer full, or Redis away.
	ActivityDropped *prometheus.CounterVec // reason

	// Read from the database and Redis on a timer, and registered only by
	// the process that reads them (see RegisterBacklog).
	OutboxPending   prometheus.Gauge
	OutboxOldestAge prometheus.Gauge
	StreamLag       *prometheus.GaugeVec // stream, group
	StreamPending   *prometheus.GaugeVec // stream, group
	DeadLetters     prometheus.Gauge
	ParkedMessages  prometheus.Gauge
	ParkedOldest    prometheus.Gauge
	// OldestTransactionAge is the age of the oldest transaction in the
	// whole PostgreSQL cluster that holds a transaction id: until it ends,
	// VACUUM keeps the row versions it might see.
	OldestTransactionAge prometheus.Gauge
	// OldestOutboxWriterAge is the age of the oldest open transaction that
	// may write the outbox: until it ends, the forwarder cannot see any
	// commit after it.
	OldestOutboxWriterAge prometheus.Gauge
	// OldestUnsettledOrder is the age of the oldest order still pending or
	// cancelling.
	OldestUnsettledOrder prometheus.Gauge
}

// Namespace prefixes every metric of orderstream's.
const Namespace = "orderstream"

func gauge(name, help string) prometheus.Gauge {
	return prometheus.NewGauge(prometheus.GaugeOpts{Namespace: Namespace, Name: name, Help: help})
}

func gaugeVec(name, help string, labels ...string) *prometheus.GaugeVec {
	return prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: Namespace, Name: name, Help: help}, labels)
}

func counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: name, Help: help}, labels)
}

// New returns the metrics, with the Go runtime's and the process's.
func New() *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{
		Registry: reg,
		BuildInfo: gaugeVec("build_info",
			"Always 1, labelled with the version, the VCS revision and the Go version of the running binary.",
			"version", "revision", "goversion"),
		HTTPRequests: counterVec("http_requests_total",
			"HTTP requests answered, by method, route pattern and status code.", "method", "route", "code"),
		HTTPDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: Namespace, Name: "http_request_duration_seconds",
			Help:    "Time to answer an HTTP request, by method and route pattern.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"method", "route"}),
		OrdersPlaced: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: Namespace, Name: "orders_placed_total",
			Help: "Orders placed (replays of an idempotent request not counted).",
		}),
		OrdersCancelled: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: Namespace, Name: "orders_cancelled_total",
			Help: "Orders cancelled (a cancel of an order cancelling or cancelled already not counted).",
		}),
		OrderSettle: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: Namespace, Name: "order_settle_seconds",
			Help:    "Time from an order's commit to its confirmation or rejection, by the database clock.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300},
		}),
		InboxDuplicates: counterVec("inbox_duplicates_total",
			"Redelivered messages the inbox skipped, by handler.", "handler"),
		MessagesParked: counterVec("messages_parked_total",
			"Messages parked to be tried again later after failing for a passing reason (a lock, a timeout, the database away), by handler.", "handler"),
		MessagesParkedOverdue: counterVec("messages_parked_overdue_total",
			"Messages parked again after failing for a passing reason for longer than PARK_SURFACE_AFTER, by handler.", "handler"),
		OrdersRedriven: counterVec("orders_redriven_total",
			"Orders unsettled for longer than ORDER_SETTLE_TIMEOUT whose events were sent again, by outcome: resent, in_flight (still in the outbox), no_event (none left to resend).", "outcome"),
		ActivityDropped: counterVec("activity_dropped_total",
			"Entries of the consumers' activity feed left out, by reason: rate_limited (over the rate of ordinary entries), buffer_full, write_failed (Redis away).", "reason"),
		OutboxPending: gauge("outbox_pending_messages",
			"Outbox rows the forwarder has not moved to Redis yet."),
		OutboxOldestAge: gauge("outbox_oldest_pending_age_seconds",
			"Age of the oldest outbox row not yet forwarded; 0 when none."),
		StreamLag: gaugeVec("stream_consumer_lag",
			"Stream entries not yet delivered to the consumer group.", "stream", "group"),
		StreamPending: gaugeVec("stream_pending_messages",
			"Stream entries delivered to a consumer of the group and not yet acknowledged.", "stream", "group"),
		DeadLetters: gauge("deadletter_messages",
			"Messages in the dead-letter stream."),
		ParkedMessages: gauge("parked_messages",
			"Messages parked after failing for a passing reason, waiting for their next attempt."),
		ParkedOldest: gauge("parked_oldest_failing_seconds",
			"How long the parked message that first failed longest ago has been failing; 0 when none is parked."),
		OldestTransactionAge: gauge("postgres_oldest_transaction_age_seconds",
			"Age of the oldest transaction in the PostgreSQL cluster that holds a transaction id (any database, any client): VACUUM keeps every row version it might see until it ends; 0 when none."),
		OldestOutboxWriterAge: gauge("outbox_oldest_writer_age_seconds",
			"Age of the oldest open transaction of orderstream's that may write the outbox and holds a transaction id: commits after it stay hidden from the outbox forwarder until it ends; 0 when none."),
		OldestUnsettledOrder: gauge("orders_oldest_unsettled_age_seconds",
			"Age of the oldest order still pending or cancelling, since it was placed; 0 when none."),
	}
	build := buildinfo.Read()
	m.BuildInfo.WithLabelValues(build.Version, orUnknown(build.Revision), orUnknown(build.GoVersion)).Set(1)
	reg.MustRegister(
		m.BuildInfo,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.HTTPRequests, m.HTTPDuration, m.OrdersPlaced, m.OrdersCancelled, m.OrderSettle, m.InboxDuplicates,
		m.MessagesParked, m.MessagesParkedOverdue, m.OrdersRedriven, m.ActivityDropped,
	)
	return m
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// Handler serves the metrics in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{})
}

// RegisterBacklog registers the gauges read from the database and Redis,
// in the one process that reads them.
func (m *Metrics) RegisterBacklog() {
	m.Registry.MustRegister(m.OutboxPending, m.OutboxOldestAge, m.StreamLag, m.StreamPending, m.DeadLetters,
		m.ParkedMessages, m.ParkedOldest, m.OldestTransactionAge, m.OldestOutboxWriterAge, m.OldestUnsettledOrder)
}

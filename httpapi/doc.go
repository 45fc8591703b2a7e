// Package httpapi is the inbound HTTP edge. New is the public listener:
// the customers' and the admin stock routes (http.go, and openapi.json,
// which it serves), /healthz and a /readyz that names nothing. NewOps is
// the operators' listener (ops.go): metrics, detailed readiness, profiles,
// and the live page's routes, which package live answers, with dead-letter
// replay. Around them: who a request speaks for (authn.go: bearer JWTs and
// the operators' admin token), what one client may ask (limits.go: rate
// limits in Redis, listings at once; conns.go: connections), the request
// bodies it reads (decode.go), the middleware of every request (request
// ids, tracing, logging and metrics, timeouts), and the one mapping from
// errors to HTTP answers (problem.go). The message handlers run in package
// worker.
package httpapi

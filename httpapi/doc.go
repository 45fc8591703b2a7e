// Package httpapi is the inbound HTTP edge: every route of the API in one
// place (New, in http.go, and in openapi.json, which it serves), the
// request bodies it reads (decode.go), its middleware (request ids,
// tracing, logging and metrics, timeouts, the admin token), and the one
// mapping from errors to HTTP answers (problem.go). It serves the live
// page's routes, which package live answers. The message handlers run in
// package worker.
package httpapi

package httpapi_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/pb33f/libopenapi"
	validator "github.com/pb33f/libopenapi-validator"
	"github.com/pb33f/libopenapi-validator/config"
	liberrors "github.com/pb33f/libopenapi-validator/errors"
	"github.com/pb33f/libopenapi-validator/schema_validation"
	"github.com/pb33f/libopenapi/datamodel/high/base"
	v3 "github.com/pb33f/libopenapi/datamodel/high/v3"

	"github.com/orderstream/orderstream/httpapi"
)

// contract is the OpenAPI document as the tests hold the server to it.
//
// It is read with pb33f/libopenapi and checked with libopenapi-validator,
// not getkin/kin-openapi: libopenapi-validator validates the document
// itself against the official OpenAPI 3.1 schema (kin-openapi's Validate
// is a hand-written check of its own), compiles every schema as JSON
// Schema 2020-12, finds the operation of a request from the document's
// paths without a router of its own to configure, and checks a response's
// status, its required headers, its media type and its body in one call.
type contract struct {
	doc     libopenapi.Document
	model   *v3.Document
	v       validator.Validator
	schemas schema_validation.SchemaValidator
	problem *base.Schema
}

func newContract(t testing.TB) *contract {
	t.Helper()
	doc, err := libopenapi.NewDocument(httpapi.OpenAPIDocument())
	if err != nil {
		t.Fatalf("read the OpenAPI document: %v", err)
	}
	model, err := doc.BuildV3Model()
	if err != nil {
		t.Fatalf("build the OpenAPI model: %v", err)
	}
	opts := []config.Option{config.WithFormatAssertions()}
	v, errs := validator.NewValidator(doc, opts...)
	if len(errs) > 0 {
		t.Fatalf("make the OpenAPI validator: %v", errs)
	}
	problem, ok := model.Model.Components.Schemas.Get("Problem")
	if !ok {
		t.Fatal("the OpenAPI document has no Problem schema")
	}
	return &contract{doc: doc, model: &model.Model, v: v, schemas: schema_validation.NewSchemaValidator(opts...), problem: problem.Schema()}
}

// requestErrors says how req, whose body is body, breaks the document.
func (c *contract) requestErrors(req *http.Request, body []byte) []string {
	req = routed(req)
	req.Body = io.NopCloser(bytes.NewReader(body))
	_, errs := c.v.ValidateHttpRequestSync(req)
	return describeErrors(errs)
}

// responseErrors says how resp, the answer to req with the body body,
// breaks the document. An answer to a request for which the document has
// no operation (a path that is no route, a method a route does not have)
// must be 404 or 405 problem details, or OPTIONS' 204; or the problem
// details of its Authorization header, which is read before the route
// (400 sent twice, 401 not valid, 429 too many failures), as the
// document's description says.
func (c *contract) responseErrors(req *http.Request, resp *http.Response, body []byte) []string {
	req = routed(req)
	resp2 := *resp
	resp2.Body = io.NopCloser(bytes.NewReader(body))
	if len(body) == 0 {
		resp2.Body = http.NoBody
	}
	// libopenapi-validator takes a HEAD request for the GET operation of
	// its path, as HTTP has it; Echo routes HEAD to nothing but the HEAD
	// routes, and there are none (TestOpenAPI_listsEveryRoute).
	if req.Method != http.MethodHead {
		_, errs := c.v.ValidateHttpResponse(req, &resp2)
		if !slices.ContainsFunc(errs, func(e *liberrors.ValidationError) bool {
			return e.IsPathMissingError() || e.IsOperationMissingError()
		}) {
			return describeErrors(errs)
		}
	}
	switch {
	case req.Method == http.MethodOptions && resp.StatusCode == http.StatusNoContent:
		return nil
	case !slices.Contains([]int{http.StatusNotFound, http.StatusMethodNotAllowed, http.StatusUnauthorized, http.StatusTooManyRequests}, resp.StatusCode) &&
		!(resp.StatusCode == http.StatusBadRequest && len(req.Header.Values("Authorization")) > 1):
		return []string{fmt.Sprintf("%s %s is in no operation of the document, yet answered %d", req.Method, req.URL.Path, resp.StatusCode)}
	case resp.Header.Get("Content-Type") != "application/problem+json":
		return []string{fmt.Sprintf("%d is not problem details: Content-Type %q", resp.StatusCode, resp.Header.Get("Content-Type"))}
	case req.Method == http.MethodHead:
		return nil
	}
	_, errs := c.schemas.ValidateSchemaBytes(c.problem, body)
	return describeErrors(errs)
}

// routed is a copy of req whose path names the route Echo answers it by.
// A route's last path parameter takes the rest of the path, slashes and
// all: Echo answers /inventory/a/b as /inventory/:sku for the SKU "a/b"
// (a SKU the rules refuse), where a document's path parameter is one
// segment; escaped, the slashes are in the segment.
func routed(req *http.Request) *http.Request {
	req = req.Clone(req.Context())
	const inventory = "/inventory/"
	if rest, ok := strings.CutPrefix(req.URL.EscapedPath(), inventory); ok && strings.Contains(rest, "/") {
		req.URL.RawPath = inventory + strings.ReplaceAll(rest, "/", "%2F")
	}
	return req
}

func describeErrors(errs []*liberrors.ValidationError) []string {
	var out []string
	for _, e := range errs {
		s := e.Message
		if e.Reason != "" && e.Reason != e.Message {
			s += ": " + e.Reason
		}
		for _, f := range e.SchemaValidationErrors {
			s += fmt.Sprintf("\n\t%s (at %s)", f.Reason, f.FieldPath)
		}
		out = append(out, s)
	}
	return out
}

// operations are the document's operations as "METHOD path", each path
// parameter written {}.
func (c *contract) operations() []string {
	var out []string
	for path, item := range c.model.Paths.PathItems.FromOldest() {
		for method := range item.GetOperations().FromOldest() {
			out = append(out, strings.ToUpper(method)+" "+anyParams(path))
		}
	}
	slices.Sort(out)
	return out
}

// anyParams writes every path parameter, OpenAPI's {name} or Echo's :name
// and *, as {}.
func anyParams(path string) string {
	segs := strings.Split(path, "/")
	for i, s := range segs {
		if strings.HasPrefix(s, ":") || s == "*" || strings.HasPrefix(s, "{") && strings.HasSuffix(s, "}") {
			segs[i] = "{}"
		}
	}
	return strings.Join(segs, "/")
}

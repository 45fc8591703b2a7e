package httpapi

import (
	"bytes"
	_ "embed"
	"net/http"

	"github.com/labstack/echo/v4"
)

// openAPIDocument is the OpenAPI 3.1 document of the public HTTP API (New),
// authored as JSON so that what is served is the file itself, byte for
// byte, with no build step between. The httpapi tests hold it to the code:
// every route of New is in it and nothing else is (the operations
// listener's own routes, NewOps', are not), and real answers of the public
// listener are validated against it.
//
//go:embed openapi.json
var openAPIDocument []byte

// OpenAPIDocument returns the OpenAPI document GET /openapi.json serves.
func OpenAPIDocument() []byte { return bytes.Clone(openAPIDocument) }

func serveOpenAPI(c echo.Context) error {
	return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, openAPIDocument)
}

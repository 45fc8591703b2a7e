package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/labstack/echo/v4"
)

// maxBodyBytes is the largest request body accepted.
const maxBodyBytes = 64 << 10

// decodeJSON reads the request body into v: one JSON value of at most
// maxBodyBytes, no unknown fields, sent as application/json (in UTF-8, the
// only charset JSON has) with one Content-Type header.
func decodeJSON(c echo.Context, v any) error {
	if err := checkContentType(c); err != nil {
		return err
	}
	body, err := readBody(c)
	if err != nil {
		return err
	}
	if p := decodeBody(body, v); p != nil {
		return p
	}
	return nil
}

// decodeOptionalJSON is decodeJSON for a body that may be left out: an
// empty one leaves v as it is, whatever its Content-Type.
func decodeOptionalJSON(c echo.Context, v any) error {
	body, err := readBody(c)
	if err != nil || len(body) == 0 {
		return err
	}
	if err := checkContentType(c); err != nil {
		return err
	}
	if p := decodeBody(body, v); p != nil {
		return p
	}
	return nil
}

// checkContentType accepts one Content-Type header, application/json in
// UTF-8.
func checkContentType(c echo.Context) error {
	contentType, err := headerValue(c, echo.HeaderContentType)
	if err != nil {
		return err
	}
	mediaType, params, err := mime.ParseMediaType(contentType)
	if err != nil || mediaType != echo.MIMEApplicationJSON {
		return newProblem(http.StatusUnsupportedMediaType, "send the body as application/json")
	}
	if charset, ok := params["charset"]; ok && !strings.EqualFold(charset, "utf-8") {
		return newProblem(http.StatusUnsupportedMediaType, "send the body as application/json in UTF-8, not %q", charset)
	}
	return nil
}

// readBody reads the request body, of at most maxBodyBytes.
func readBody(c echo.Context) ([]byte, error) {
	body, err := io.ReadAll(http.MaxBytesReader(c.Response(), c.Request().Body, maxBodyBytes))
	if err != nil {
		return nil, jsonProblem(err)
	}
	return body, nil
}

// decodeBody decodes body into v, or says what is wrong with it.
func decodeBody(body []byte, v any) *problem {
	if !utf8.Valid(body) {
		// encoding/json would quietly turn the bad bytes into U+FFFD.
		return newProblem(http.StatusBadRequest, "the body is not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonProblem(err)
	}
	if err := dec.Decode(&struct{}{}); !errors.Is(err, io.EOF) {
		return newProblem(http.StatusBadRequest, "the body must hold a single JSON value")
	}
	return nil
}

func jsonProblem(err error) *problem {
	var tooLarge *http.MaxBytesError
	var typeErr *json.UnmarshalTypeError
	switch {
	case errors.As(err, &tooLarge):
		return newProblem(http.StatusRequestEntityTooLarge, "the body must be at most %d bytes", maxBodyBytes)
	case errors.Is(err, io.EOF):
		return newProblem(http.StatusBadRequest, "the body is empty; send a JSON object")
	case errors.As(err, &typeErr) && typeErr.Field == "":
		return newProblem(http.StatusBadRequest, "the body must be a JSON object")
	case errors.As(err, &typeErr):
		p := newProblem(http.StatusUnprocessableEntity, "the request has invalid fields")
		p.Errors.Add(typeErr.Field, "must be %s, not %s", jsonType(typeErr.Type.Kind().String()), typeErr.Value)
		return p
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		p := newProblem(http.StatusUnprocessableEntity, "the request has invalid fields")
		p.Errors.Add(strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`), "is not a known field")
		return p
	default:
		return newProblem(http.StatusBadRequest, "the body is not valid JSON: %v", err)
	}
}

// jsonType names a Go kind the way a JSON client thinks of it.
func jsonType(kind string) string {
	switch {
	case strings.HasPrefix(kind, "int"), strings.HasPrefix(kind, "uint"):
		return "a whole number in range"
	case kind == "string":
		return "a string"
	case kind == "slice":
		return "an array"
	case kind == "struct", kind == "map":
		return "an object"
	default:
		return "a " + kind
	}
}

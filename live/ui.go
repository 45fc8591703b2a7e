package live

import (
	"embed"
	"io/fs"
	"net/http"

	"github.com/labstack/echo/v4"
)

// The live page: plain HTML, CSS and JavaScript in the binary, no build
// step and nothing fetched from elsewhere, so it works offline.
//
//go:embed ui
var uiFiles embed.FS

// contentSecurity lets the page load only its own files and talk only to
// its own origin.
const contentSecurity = "default-src 'self'; style-src 'self'; script-src 'self'; connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"

// page is the page's files, and the file server of its assets.
type page struct {
	files  fs.FS
	assets http.Handler
}

func newPage() page {
	sub, _ := fs.Sub(uiFiles, "ui") // the directory is embedded above
	return page{files: sub, assets: http.StripPrefix("/ui/", http.FileServerFS(sub))}
}

// ServePage serves the page itself (GET /).
func (l *Live) ServePage(c echo.Context) error {
	c.Response().Header().Set("Content-Security-Policy", contentSecurity)
	index, err := fs.ReadFile(l.page.files, "index.html")
	if err != nil {
		return err
	}
	return c.HTMLBlob(http.StatusOK, index)
}

// ServeAsset serves the page's scripts and styles (GET /ui/*); a file it
// does not have is echo.ErrNotFound, which the API answers as problem
// details, like every error.
func (l *Live) ServeAsset(c echo.Context) error {
	if _, err := fs.Stat(l.page.files, c.Param("*")); err != nil {
		return echo.ErrNotFound
	}
	c.Response().Header().Set("Content-Security-Policy", contentSecurity)
	l.page.assets.ServeHTTP(c.Response(), c.Request())
	return nil
}

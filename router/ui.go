package router

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
const contentSecurity = "default-src 'self'; style-src 'self'; script-src 'self'; connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'"

func uiHandler() (index echo.HandlerFunc, assets echo.HandlerFunc) {
	sub, _ := fs.Sub(uiFiles, "ui") // the directory is embedded above
	files := http.StripPrefix("/ui/", http.FileServerFS(sub))
	index = func(c echo.Context) error {
		c.Response().Header().Set("Content-Security-Policy", contentSecurity)
		page, err := fs.ReadFile(sub, "index.html")
		if err != nil {
			return err
		}
		return c.HTMLBlob(http.StatusOK, page)
	}
	assets = func(c echo.Context) error {
		if _, err := fs.Stat(sub, c.Param("*")); err != nil {
			return echo.ErrNotFound // answered as problem details, like every error
		}
		c.Response().Header().Set("Content-Security-Policy", contentSecurity)
		files.ServeHTTP(c.Response(), c.Request())
		return nil
	}
	return index, assets
}

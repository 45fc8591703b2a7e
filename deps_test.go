package main

import (
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/orderstream/orderstream"

// domainLayer is what a domain package (orders, inventory, notifications,
// any package that layers does not list) may import: the contract and the
// infrastructure below the domain.
var domainLayer = []string{"events", "logging", "postgres", "validate"}

// layers are the packages of orderstream and the ones of them each may
// import (its tests aside), as the house style draws them: the contract
// (events) imports nothing; the domain (orders, inventory) the contract and
// the infrastructure below it, and never the other; the edges (httpapi and
// the live page it serves, outbox, redisstreams, worker) what they carry;
// only the composition root (the root package) sees everything, and
// nothing imports it.
//
// A package not listed here is a domain package (a new service with its
// handlers, such as notifications): it may import what domainLayer allows,
// and no other domain package. Any other new package is added here with
// the layer it belongs to.
var layers = map[string][]string{
	"events":             {},
	"auth":               {},
	"tracing":            {},
	"validate":           {},
	"logging":            {},
	"migrations":         {},
	"parked":             {},
	"internal/buildinfo": {},
	"internal/netfault":  {},
	"metrics":            {"internal/buildinfo"},
	"postgres":           {"events", "logging", "tracing"},
	"redisstreams":       {"events"},
	"activity":           {"redisstreams"},
	"outbox":             {"events", "postgres", "redisstreams", "tracing"},
	"live":               {"activity", "events", "inventory", "metrics", "orders", "outbox", "parked", "postgres", "redisstreams"},
	"httpapi": {"auth", "events", "inventory", "live", "logging", "metrics", "orders", "postgres", "redisstreams",
		"story", "validate"},
	"story":              {"events", "orders", "outbox", "postgres", "redisstreams", "validate"},
	"worker":             {"activity", "events", "logging", "metrics", "parked", "postgres", "redisstreams", "tracing"},
	"worker/handlertest": {"events", "internal/testenv", "postgres", "worker"},
	"internal/testenv":   {"events", "logging", "migrations", "outbox", "postgres", "redisstreams"},
}

// TestDependencies_followTheLayers: every package imports only what its
// layer allows, so the dependency rules hold without anyone remembering
// them.
func TestDependencies_followTheLayers(t *testing.T) {
	t.Parallel()
	imports := map[string]map[string]bool{} // package dir → orderstream packages it imports
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path != "." && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata" || d.Name() == "node_modules") {
			return filepath.SkipDir
		}
		if d.IsDir() && path != "." {
			// A directory with a go.mod of its own (tools/) is another module.
			if _, err := os.Stat(filepath.Join(path, "go.mod")); err == nil {
				return filepath.SkipDir
			}
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		dir := filepath.ToSlash(filepath.Dir(path))
		if imports[dir] == nil {
			imports[dir] = map[string]bool{}
		}
		for _, spec := range f.Imports {
			p, _ := strconv.Unquote(spec.Path.Value)
			if p == module {
				imports[dir]["."] = true
			} else if rest, ok := strings.CutPrefix(p, module+"/"); ok {
				imports[dir][rest] = true
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for dir, deps := range imports {
		if dir == "." {
			continue // the composition root
		}
		allowed, known := layers[dir]
		if !known {
			allowed = domainLayer
		}
		for dep := range deps {
			if !slices.Contains(allowed, dep) {
				t.Errorf("%s imports %s, which its layer does not allow (it may import %v)", dir, dep, allowed)
			}
		}
	}
	for dir := range layers {
		if imports[dir] == nil {
			t.Errorf("layers names %s, which is no package here", dir)
		}
	}
}

// TestPackages_sayWhatTheyOwn: every package has a doc comment, so that
// `go doc` on it opens with what it owns: "Package name …", or "Command
// name …" for a program.
func TestPackages_sayWhatTheyOwn(t *testing.T) {
	t.Parallel()
	documented := map[string]bool{} // package dir → has its doc comment
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path != "." && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata" || d.Name() == "node_modules") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.PackageClauseOnly|parser.ParseComments)
		if err != nil {
			return err
		}
		dir := filepath.ToSlash(filepath.Dir(path))
		doc := ""
		if f.Doc != nil {
			doc = f.Doc.Text()
		}
		opening := "Package " + f.Name.Name + " "
		if f.Name.Name == "main" {
			opening = "Command "
		}
		documented[dir] = documented[dir] || strings.HasPrefix(doc, opening)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for dir, ok := range documented {
		if !ok {
			t.Errorf("package %s has no doc comment saying what it owns (\"Package name …\" in doc.go or its main file)", dir)
		}
	}
}

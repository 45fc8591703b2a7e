package main

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// docFiles are the documents held to the code: the README and docs/.
func docFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	return append([]string{"README.md", "BENCHMARKS.md"}, files...)
}

// TestDocs_nameWhatExists: what the documents name in code spans (a
// file, a Go function, type or method of orderstream's, a command, an
// environment variable, a make target) exists, and the counts they give
// of what the code can count (migrations, event types, handler groups)
// are the code's. A rename that leaves a document behind fails here.
func TestDocs_nameWhatExists(t *testing.T) {
	t.Parallel()
	code := readCode(t)
	for _, name := range docFiles(t) {
		text, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		for _, problem := range code.check(string(text)) {
			t.Errorf("%s: %s", name, problem)
		}
	}
}

// TestDocs_checkFindsWhatIsGone: the check reports each kind of name that
// no longer exists, so the test above can fail.
func TestDocs_checkFindsWhatIsGone(t *testing.T) {
	t.Parallel()
	code := readCode(t)
	doc := "The flow: `orders/service.go` `Service.Place`, then `postgres.InInbox`.\n" +
		"Renamed: `Service.Placed`, `postgres.InInboxTx`, `orders/place.go`, `make tests`,\n" +
		"`orderstream handlers replay`, `HANDLER_TIMEOUTS`; there are 3 migrations and 9 event types.\n" +
		"| `handlers.go` | 1 | the list |\n\nTogether 2 lines.\n"
	got := strings.Join(code.check(doc), "\n")
	for _, want := range []string{"`Service.Placed`", "`postgres.InInboxTx`", "`orders/place.go`", "`make tests`",
		"`orderstream handlers replay`", "`HANDLER_TIMEOUTS`", "3 migrations", "9 event types",
		"`handlers.go` has", "\"Together 2 lines\""} {
		if !strings.Contains(got, want) {
			t.Errorf("the check does not report %s; it reported:\n%s", want, got)
		}
	}
	for _, fine := range []string{"`Service.Place`", "`postgres.InInbox`", "`orders/service.go`"} {
		if strings.Contains(got, fine) {
			t.Errorf("the check reports %s, which exists:\n%s", fine, got)
		}
	}
}

// codeFacts is what the documents are checked against.
type codeFacts struct {
	packages map[string]map[string]bool // package name → its top-level names and Type.Method
	methods  map[string]bool            // Type.Method and Type.Field, in any package
	literals map[string]bool            // string literals of the code, scripts and configuration
	targets  map[string]bool            // make targets
	counts   map[string]int             // "migrations", "event types", "handler groups"
}

func readCode(t *testing.T) codeFacts {
	t.Helper()
	c := codeFacts{packages: map[string]map[string]bool{}, methods: map[string]bool{}, literals: map[string]bool{},
		targets: map[string]bool{}, counts: map[string]int{}}
	literal := regexp.MustCompile(`"([^"\s]+)"|'([^'\s]+)'|\$\{?([A-Z][A-Z0-9_]+)`)
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path != "." && (strings.HasPrefix(d.Name(), ".") && d.Name() != ".ci" || d.Name() == "testdata" || d.Name() == "bin") {
			return filepath.SkipDir
		}
		if d.IsDir() {
			return nil
		}
		switch {
		case strings.HasSuffix(path, ".go") && !strings.HasSuffix(path, "_test.go"):
			c.addGo(t, path)
		case strings.HasSuffix(path, ".sh"), strings.HasSuffix(path, ".yml"), strings.HasSuffix(path, ".yaml"),
			strings.HasSuffix(path, ".ini"), d.Name() == "Makefile", d.Name() == "Dockerfile", path == ".ci/run":
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			for _, m := range literal.FindAllStringSubmatch(string(b), -1) {
				c.literals[m[1]+m[2]+m[3]] = true
			}
			for _, line := range strings.Split(string(b), "\n") {
				for _, word := range regexp.MustCompile(`\b[A-Z][A-Z0-9_]{2,}\b`).FindAllString(line, -1) {
					c.literals[word] = true
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	makefile, err := os.ReadFile("Makefile")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range regexp.MustCompile(`(?m)^([a-z][a-z-]*):`).FindAllStringSubmatch(string(makefile), -1) {
		c.targets[m[1]] = true
	}
	migrations, err := filepath.Glob("migrations/*.sql")
	if err != nil {
		t.Fatal(err)
	}
	c.counts["migrations"] = len(migrations)
	c.counts["event types"] = len(c.eventTypes())
	c.counts["handler groups"] = len((&app{}).subscriptions())
	return c
}

// addGo records the top-level names, methods and string literals of a Go
// file.
func (c codeFacts) addGo(t *testing.T, path string) {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.SkipObjectResolution)
	if err != nil {
		t.Fatal(err)
	}
	pkg := f.Name.Name
	if c.packages[pkg] == nil {
		c.packages[pkg] = map[string]bool{}
	}
	names := c.packages[pkg]
	for _, decl := range f.Decls {
		switch d := decl.(type) {
		case *ast.FuncDecl:
			if d.Recv == nil {
				names[d.Name.Name] = true
				continue
			}
			recv := d.Recv.List[0].Type
			for {
				if s, ok := recv.(*ast.StarExpr); ok {
					recv = s.X
				} else if i, ok := recv.(*ast.IndexExpr); ok {
					recv = i.X
				} else {
					break
				}
			}
			if id, ok := recv.(*ast.Ident); ok {
				names[id.Name+"."+d.Name.Name] = true
				c.methods[id.Name+"."+d.Name.Name] = true
			}
		case *ast.GenDecl:
			for _, spec := range d.Specs {
				switch s := spec.(type) {
				case *ast.TypeSpec:
					names[s.Name.Name] = true
					if st, ok := s.Type.(*ast.StructType); ok {
						for _, field := range st.Fields.List {
							for _, n := range field.Names {
								c.methods[s.Name.Name+"."+n.Name] = true
							}
						}
					}
				case *ast.ValueSpec:
					for _, n := range s.Names {
						names[n.Name] = true
					}
				}
			}
		}
	}
	ast.Inspect(f, func(n ast.Node) bool {
		if lit, ok := n.(*ast.BasicLit); ok && lit.Kind == token.STRING {
			if s, err := strconv.Unquote(lit.Value); err == nil {
				c.literals[s] = true
				for _, w := range strings.Fields(s) {
					c.literals[strings.Trim(w, "(),.:;=")] = true
				}
			}
		}
		return true
	})
}

func (c codeFacts) eventTypes() []string {
	var types []string
	for name := range c.packages["events"] {
		if strings.HasSuffix(name, ".EventType") {
			types = append(types, name)
		}
	}
	return types
}

var (
	codeSpan = regexp.MustCompile("`([^`\n]+)`")
	// A repository path: a file with an extension the repository uses, or
	// a directory with a trailing slash.
	pathLike = regexp.MustCompile(`^(\.?[a-zA-Z0-9_-]+/)*[a-zA-Z0-9_.-]+\.(go|sql|sh|yml|yaml|json|md|ini|conf|js|css|html)$|^([a-z0-9_-]+/)+$`)
	// pkg.Name, Type.Method, pkg.Type.Method, optionally called.
	goName    = regexp.MustCompile(`^([a-z][a-z0-9]*)\.([A-Z]\w*)(?:\.([A-Z]\w*))?(?:\(\))?$|^([A-Z]\w*)\.([A-Z]\w*)(?:\(\))?$`)
	envVar    = regexp.MustCompile(`^([A-Z][A-Z0-9]*_[A-Z0-9_]+)(=.*)?$`)
	lineCount = regexp.MustCompile("(?m)^\\| `([^`]+)` \\| ([0-9]+) \\|")
	together  = regexp.MustCompile(`Together ([0-9,]+) lines`)
	count     = regexp.MustCompile(`\b(\d+|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve) (migrations|event types|handler groups)\b`)
)

var words = map[string]int{"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
	"nine": 9, "ten": 10, "eleven": 11, "twelve": 12}

// check returns what doc names that does not exist.
func (c codeFacts) check(doc string) []string {
	var problems []string
	for _, m := range codeSpan.FindAllStringSubmatch(doc, -1) {
		span := strings.TrimSpace(m[1])
		if problem := c.checkSpan(span); problem != "" {
			problems = append(problems, fmt.Sprintf("`%s`: %s", span, problem))
		}
	}
	// A table row of a file and its line count, as "The pattern in seven
	// files" gives them, and their sum.
	sum := 0
	for _, m := range lineCount.FindAllStringSubmatch(doc, -1) {
		b, err := os.ReadFile(m[1])
		if err != nil {
			continue // reported as a file that does not exist
		}
		lines := strings.Count(string(b), "\n")
		sum += lines
		if strconv.Itoa(lines) != m[2] {
			problems = append(problems, fmt.Sprintf("`%s` has %d lines, not %s", m[1], lines, m[2]))
		}
	}
	if m := together.FindStringSubmatch(doc); m != nil && strings.ReplaceAll(m[1], ",", "") != strconv.Itoa(sum) {
		problems = append(problems, fmt.Sprintf("%q: the files above have %d lines together", m[0], sum))
	}
	for _, m := range count.FindAllStringSubmatch(doc, -1) {
		n, ok := words[m[1]]
		if !ok {
			n, _ = strconv.Atoi(m[1])
		}
		if n != c.counts[m[2]] {
			problems = append(problems, fmt.Sprintf("%q: there are %d %s", m[0], c.counts[m[2]], m[2]))
		}
	}
	slices.Sort(problems)
	return slices.Compact(problems)
}

func (c codeFacts) checkSpan(span string) string {
	switch {
	case strings.HasPrefix(span, "make "):
		target := strings.Fields(span)[1]
		if !c.targets[target] && !strings.Contains(target, "=") {
			return "no such make target"
		}
	case strings.HasPrefix(span, "orderstream "):
		fields := strings.Fields(span)[1:]
		if len(fields) == 0 || strings.HasPrefix(fields[0], "-") || strings.ContainsAny(fields[0], "_=") {
			return ""
		}
		for _, first := range strings.Split(fields[0], "|") {
			if lookup(first).name == "" && (len(fields) < 2 || lookup(first+" "+fields[1]).name == "") {
				return "no such command"
			}
		}
	case pathLike.MatchString(span) && !strings.Contains(span, "://"):
		if strings.HasPrefix(span, "/") || strings.HasPrefix(span, "bin/") || strings.Contains(span, "*") {
			return "" // absolute, written by the build, or a pattern
		}
		if _, err := os.Stat(strings.TrimPrefix(span, "./")); err != nil {
			// Paths of files that builds and runs write, or that live
			// elsewhere, are named with their directory only when they
			// are the repository's.
			if strings.Contains(span, "/") || slices.Contains([]string{".go", ".sql", ".sh"}, filepath.Ext(span)) {
				return "no such file"
			}
		}
	case goName.MatchString(span):
		g := goName.FindStringSubmatch(span)
		if g[1] != "" {
			names, ours := c.packages[g[1]]
			if !ours {
				return "" // another module's package
			}
			name := g[2]
			if g[3] != "" {
				name += "." + g[3]
			}
			if !names[name] {
				return "no such name in package " + g[1]
			}
		} else if c.isTypeOfOurs(g[4]) && !c.methods[g[4]+"."+g[5]] {
			return "no such method or field"
		}
	case envVar.MatchString(span):
		name := envVar.FindStringSubmatch(span)[1]
		if !c.literals[name] {
			return "named nowhere in the code, scripts or configuration"
		}
	}
	return ""
}

// isTypeOfOurs reports whether name is a type declared in orderstream.
func (c codeFacts) isTypeOfOurs(name string) bool {
	for _, names := range c.packages {
		if names[name] {
			return true
		}
	}
	return false
}

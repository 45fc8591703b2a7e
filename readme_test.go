package main

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

// recipeFiles are the files of the handler recipe (README, "Adding a
// Watermill handler"): the notifications example.
var recipeFiles = []string{
	"migrations/00008_notifications.sql",
	"notifications/notifications.go",
	"notifications/notifications_test.go",
}

// TestReadme_recipe: the README's count of the recipe's change and its
// copy of the registration are the repository's, so neither can drift.
func TestReadme_recipe(t *testing.T) {
	t.Parallel()
	readme := read(t, "README.md")
	handlers := strings.Split(read(t, "handlers.go"), "\n")

	// The entry: from its Name to the end of its handlers; and its import.
	var entry []string
	for i, line := range handlers {
		if strings.Contains(line, `Name: "notifications.order_confirmed"`) {
			for _, l := range handlers[i:] {
				entry = append(entry, l)
				if strings.TrimSpace(l) == "}}," {
					break
				}
			}
		}
	}
	if len(entry) == 0 {
		t.Fatal(`handlers.go has no entry "notifications.order_confirmed"`)
	}
	imports := 0
	for _, line := range handlers {
		if strings.HasSuffix(line, `/notifications"`) {
			imports++
		}
	}

	counts := map[string]int{"handlers.go": len(entry) + imports}
	for _, f := range recipeFiles {
		counts[f] = strings.Count(read(t, f), "\n")
	}
	want := diffStat(append([]string{"handlers.go"}, recipeFiles...), counts)
	if got := between(t, readme, "recipe:stat"); got != "```\n"+want+"```\n" {
		t.Errorf("README's recipe count is not the repository's; it should read:\n%s", want)
	}
	if got, want := between(t, readme, "recipe:entry"), "```go\n"+strings.Join(entry, "\n")+"\n```\n"; got != want {
		t.Errorf("README's registration is not handlers.go's; it should read:\n%s", want)
	}
}

// diffStat renders counts of added lines as `git diff --stat` does.
func diffStat(files []string, counts map[string]int) string {
	var b strings.Builder
	width, most, total := 0, 0, 0
	for _, f := range files {
		width, most = max(width, len(f)), max(most, counts[f])
		total += counts[f]
	}
	digits := len(fmt.Sprint(most))
	for _, f := range files {
		fmt.Fprintf(&b, " %-*s | %*d %s\n", width, f, digits, counts[f], strings.Repeat("+", counts[f]))
	}
	fmt.Fprintf(&b, " %d files changed, %d insertions(+)\n", len(files), total)
	return b.String()
}

// between is what text holds between <!-- name --> and <!-- /name -->.
func between(t *testing.T, text, name string) string {
	t.Helper()
	_, rest, ok := strings.Cut(text, "<!-- "+name+" -->\n")
	inner, _, ok2 := strings.Cut(rest, "<!-- /"+name+" -->")
	if !ok || !ok2 {
		t.Fatalf("README.md has no <!-- %s --> block", name)
	}
	return inner
}

func read(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

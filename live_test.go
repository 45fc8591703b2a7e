package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/orderstream/orderstream/internal/testenv"
)

// chromium finds a Chromium to drive, or skips: except in CI, where .ci/run
// installs Debian's chromium and its absence is a failure.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{os.Getenv("CHROMIUM"), "chromium", "chromium-browser", "google-chrome"} {
		if name == "" {
			continue
		}
		if path, err := exec.LookPath(name); err == nil {
			return path
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("no Chromium found (CI is set): install Debian's chromium package")
	}
	t.Skip("no Chromium installed, skipping the browser test (apt-get install chromium, or set CHROMIUM)")
	return ""
}

// TestLivePage drives the live page in a headless Chromium: it sets stock
// and places an order through the page's forms, sees the order turn
// confirmed in the list that Server-Sent Events keep current, then cancels
// it with its Cancel button and sees it turn cancelled, its button gone and
// its units available again.
func TestLivePage(t *testing.T) {
	t.Parallel()
	browser := chromium(t)
	addr, opsAddr := testenv.FreeAddr(t), testenv.FreeAddr(t)
	start(t, with(env(t, addr), map[string]string{"OPS_ADDR": opsAddr}))
	client{t, "http://" + addr}.waitHealthy()
	base := "http://" + opsAddr // the page is the operators'

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(browser),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.WindowSize(1280, 1000),
		chromedp.UserDataDir(t.TempDir()),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	ctx, cancel := chromedp.NewContext(allocCtx)
	defer cancel()
	ctx, cancelTimeout := context.WithTimeout(ctx, 60*time.Second)
	defer cancelTimeout()

	sku := testenv.Unique("SKU")
	css := func(sel string) chromedp.CSS { return chromedp.CSS(sel) }
	err := chromedp.Do(ctx,
		chromedp.Navigate(base+"/"),
		chromedp.WaitVisible(css(`#connection.live`)),
		chromedp.SetValue(css(`#token`), mint(t, "live-page-admin", true)),
		chromedp.SetValue(css(`#stock-sku`), sku),
		chromedp.SetValue(css(`#stock-available`), "5"),
		chromedp.Click(css(`#stock-form button`)),
		chromedp.WaitVisible(`//p[@id="message" and contains(., "5 available")]`),
		chromedp.SetValue(css(`#order-sku`), sku),
		chromedp.SetValue(css(`#order-quantity`), "2"),
		chromedp.Click(css(`#order-form button`)),
		chromedp.WaitVisible(`//p[@id="message" and contains(., "placed")]`),
	)
	if err != nil {
		t.Fatalf("driving the page: %v", err)
	}
	message, err := chromedp.Run(ctx, chromedp.Text(css(`#message`)))
	if err != nil {
		t.Fatal(err)
	}
	id := regexp.MustCompile(`[0-9a-f-]{36}`).FindString(message)
	if id == "" {
		t.Fatalf("the page said %q, want the order id", message)
	}
	if err := chromedp.Do(ctx, chromedp.WaitVisible(css(`td.status.confirmed[data-order-id="`+id+`"]`))); err != nil {
		t.Fatalf("order %s did not show as confirmed: %v", id, err)
	}
	err = chromedp.Do(ctx,
		chromedp.Click(css(`button[aria-label="Cancel order `+id+`"]`)),
		chromedp.WaitVisible(`//p[@id="message" and contains(., "`+id+` is cancell")]`),
		chromedp.WaitVisible(css(`td.status.cancelled[data-order-id="`+id+`"]`)),
		chromedp.WaitNotPresent(css(`button[aria-label="Cancel order `+id+`"]`)),
		chromedp.WaitVisible(`//tbody[@id="stock"]/tr[td[1]="`+sku+`" and td[2]="5" and td[3]="0"]`),
	)
	if err != nil {
		message, _ := chromedp.Run(ctx, chromedp.Text(css(`#message`)))
		t.Fatalf("cancelling order %s from the page: %v (the page says %q)", id, err, message)
	}
	// Another order, left confirmed (a cancelled one counts as placed, not
	// settled); the charts draw both (their window ends two seconds
	// behind the database clock).
	err = chromedp.Do(ctx,
		chromedp.SetValue(css(`#order-quantity`), "1"),
		chromedp.Click(css(`#order-form button`)),
		chromedp.WaitVisible(`//p[@id="message" and contains(., "placed")]`),
	)
	if err != nil {
		t.Fatalf("placing a second order: %v", err)
	}
	message, err = chromedp.Run(ctx, chromedp.Text(css(`#message`)))
	if err != nil {
		t.Fatal(err)
	}
	second := regexp.MustCompile(`[0-9a-f-]{36}`).FindString(message)
	if err := chromedp.Do(ctx, chromedp.WaitVisible(css(`td.status.confirmed[data-order-id="`+second+`"]`))); err != nil {
		t.Fatalf("order %s did not show as confirmed: %v", second, err)
	}

	// Its story, from a click on its id: every step of a settled order.
	err = chromedp.Do(ctx,
		chromedp.Click(css(`button[aria-label="The story of order `+second+`"]`)),
		chromedp.WaitVisible(css(`#story-steps li[data-kind="settled"]`)),
	)
	if err != nil {
		t.Fatalf("the story of order %s did not open: %v", second, err)
	}
	kinds, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](
		`[...document.querySelectorAll("#story-steps li")].map((li) => li.dataset.kind + ": " + li.querySelector(".step").textContent)`))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"placed: placed", "written: in the outbox: OrderPlaced", "on_stream: on its stream: OrderPlaced",
		"handled: handled: inventory", "written: in the outbox: StockReserved", "handled: handled: orders", "settled: settled: confirmed"} {
		if !slices.ContainsFunc(kinds, func(k string) bool { return strings.HasPrefix(k, want) }) {
			t.Errorf("the story has no step %q; it has %q", want, kinds)
		}
	}
	summary, err := chromedp.Run(ctx, chromedp.Text(css(`#story-summary`)))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(summary, "correlation id") || strings.Contains(summary, "correlation id –") {
		t.Errorf("the story's summary %q names no correlation id", summary)
	}
	storyShot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	saveArtifact(t, "live-page-story.png", storyShot)
	if err := chromedp.Do(ctx, chromedp.Click(css(`#story-close`)), chromedp.WaitNotVisible(css(`#story`))); err != nil {
		t.Fatal(err)
	}
	// The consumers' feed shows what the handlers did with it.
	if err := chromedp.Do(ctx, chromedp.WaitVisible(`//tbody[@id="activity"]/tr[td[4]="`+second[:8]+`…"]`)); err != nil {
		t.Fatalf("the consumers' activity does not show order %s: %v", second, err)
	}
	for _, chart := range []string{"chart-orders", "chart-latency"} {
		_, err := chromedp.Run(ctx, chromedp.Poll[bool](`(() => {
			const el = document.getElementById("`+chart+`");
			return el.querySelector("canvas") !== null && Number(el.dataset.nonzero) > 0;
		})()`))
		if err != nil {
			t.Fatalf("chart %s has no data after an order settled: %v", chart, err)
		}
	}
	for _, width := range []int64{1280, 390} {
		if err := chromedp.Do(ctx, chromedp.EmulateViewport(width, 900)); err != nil {
			t.Fatal(err)
		}
		assertNoOverflow(ctx, t, width)
		screenshot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		saveArtifact(t, fmt.Sprintf("live-page-%d.png", width), screenshot)
	}
}

// assertNoOverflow fails t when the page, or any card of it, is wider
// than the window: nothing may scroll sideways. The charts follow their
// card's width a frame after it changes, so it asks until all fit or the
// context ends.
func assertNoOverflow(ctx context.Context, t *testing.T, width int64) {
	t.Helper()
	const overflowing = `(() => {
		const page = document.documentElement;
		const wide = [];
		if (page.scrollWidth > page.clientWidth) wide.push("the page: " + page.scrollWidth + " > " + page.clientWidth);
		for (const el of document.querySelectorAll("section, dialog[open], figure")) {
			if (el.scrollWidth > el.clientWidth + 1) {
				wide.push((el.id || el.getAttribute("aria-labelledby") || el.tagName) + ": " + el.scrollWidth + " > " + el.clientWidth);
			}
		}
		return wide;
	})()`
	for {
		wide, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](overflowing))
		if err != nil {
			t.Fatal(err)
		}
		if len(wide) == 0 {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("at %d px these are wider than their box: %v", width, wide)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// saveArtifact keeps a file a person may want to look at after the tests,
// in $ARTIFACTS_DIR or .run/artifacts.
func saveArtifact(t *testing.T, name string, data []byte) {
	t.Helper()
	dir := os.Getenv("ARTIFACTS_DIR")
	if dir == "" {
		dir = filepath.Join(".run", "artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("saved %s", path)
}

package clustertest_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"cnm/daemon/clustertest"
)

// browser starts headless Chromium (Debian's, which make deps installs)
// for the test; a missing browser fails the test rather than skip it.
func browser(t *testing.T) context.Context {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal("chromium is not installed: make deps installs it")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.Flag("headless", true),
		// The nodes' certificates come from the cluster's own CA.
		chromedp.Flag("ignore-certificate-errors", true),
		// Tests run as root in containers, where Chromium's sandbox cannot.
		chromedp.NoSandbox,
		chromedp.WindowSize(1280, 900),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	// The browser starts with the first run on its context: on ctx itself,
	// not on a step's shorter one, whose end would close it.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// within runs steps with a deadline.
func within(t *testing.T, ctx context.Context, d time.Duration, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	if err := chromedp.Do(tctx, steps...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// press clicks the element sel finds, once it is there, within one task
// of the page: the view redraws its cards and rows whenever the cluster
// state moves, and an element found by one step may be gone by the next.
func press(sel string) chromedp.Action[chromedp.Void] {
	return chromedp.Steps(chromedp.WaitVisible(sel),
		chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			ok, err := chromedp.Evaluate[bool](fmt.Sprintf(`(() => { const b = document.querySelector(%q); if (b) b.click(); return !!b })()`, sel))(ctx, tg)
			if err == nil && !ok {
				err = fmt.Errorf("no %s to press", sel)
			}
			return err
		}))
}

// value runs one action that returns a value, with a deadline.
func value[T any](t *testing.T, ctx context.Context, d time.Duration, what string, a chromedp.Action[T]) T {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	v, err := chromedp.Run(tctx, a)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return v
}

// screenshot saves the page under the test's artifacts (go test
// -artifacts), in CNM_UI_SHOTS when it names a directory (make test's
// .test-output/ui), and as docs/ui.png when CNM_UI_SCREENSHOT names it.
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	png := value(t, ctx, 10*time.Second, "screenshot "+name, chromedp.FullScreenshot(100))
	dirs := []string{t.ArtifactDir()}
	if d := os.Getenv("CNM_UI_SHOTS"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		dirs = append(dirs, d)
	}
	for _, d := range dirs {
		if err := os.WriteFile(filepath.Join(d, name+".png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if p := os.Getenv("CNM_UI_SCREENSHOT"); p != "" && name == "in-maintenance" {
		if err := os.WriteFile(p, png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestUI_MaintenanceOnThroughTheWebViewCarriesOnThroughALeaderKill signs in
// to the web view of a follower, starts maintenance_on of the third node
// after seeing its plan, kills the leader while the shards move, and
// watches the page carry on to 100 % with the node emptied. A viewer sees
// the cluster but no button.
func TestUI_MaintenanceOnThroughTheWebViewCarriesOnThroughALeaderKill(t *testing.T) {
	c := clustertest.Start(t, 3, slow())
	leader := c.Leader(15 * time.Second)
	c.MustDo(leader, "PUT", "/v1/cluster/policy", map[string]any{"default_shards_placement": "sparse"}, 200)
	c.MustDo(leader, "POST", "/v1/bdbs", map[string]any{"name": "orders", "memory_size": 1 << 30, "shards_count": 3, "replication": true}, 200)
	c.MustDo(leader, "POST", "/v1/users", map[string]any{"email": "viewer@x.io", "password": "viewer-pass", "role": "cluster_viewer"}, 200)
	var page, target int
	for _, uid := range c.UIDs() {
		switch {
		case uid == leader:
		case page == 0:
			page = uid
		default:
			target = uid
		}
	}
	url := "https://" + c.Member(page).Cfg.APIAddr + "/ui/"
	ctx := browser(t)

	// A viewer: the cluster, no buttons.
	within(t, ctx, 30*time.Second, "sign in as a viewer",
		chromedp.Navigate(url),
		chromedp.WaitVisible("#signin"),
		chromedp.SendKeys("#email", "viewer@x.io"),
		chromedp.SendKeys("#password", "viewer-pass"),
		chromedp.Click("#signin-button"),
		chromedp.WaitVisible(`#nodes .node[data-node="`+strconv.Itoa(target)+`"]`),
	)
	buttons := value(t, ctx, 5*time.Second, "count the viewer's buttons",
		chromedp.Evaluate[int](`document.querySelectorAll("#nodes button, #actions button.cancel").length`))
	if buttons != 0 {
		t.Errorf("a cluster_viewer sees %d action buttons, want none", buttons)
	}
	within(t, ctx, 10*time.Second, "sign out", chromedp.Click("#signout"), chromedp.WaitVisible("#signin"))

	// A wrong password is said, and nothing else is shown.
	within(t, ctx, 15*time.Second, "a wrong password",
		chromedp.SendKeys("#email", clustertest.AdminUser),
		chromedp.SendKeys("#password", "wrong"),
		chromedp.Click("#signin-button"),
		chromedp.WaitVisible("#signin-error"))
	signinErr := value(t, ctx, 5*time.Second, "read the sign-in error", chromedp.Text("#signin-error"))
	if !strings.Contains(signinErr, "Wrong") {
		t.Errorf("sign-in error %q", signinErr)
	}

	within(t, ctx, 30*time.Second, "sign in as the admin",
		// A refused sign-in empties the password field.
		chromedp.SendKeys("#password", clustertest.AdminPassword),
		chromedp.Click("#signin-button"),
		chromedp.WaitVisible(`#nodes .node[data-node="`+strconv.Itoa(target)+`"] .shard`),
	)
	cards := value(t, ctx, 5*time.Second, "count the cards", chromedp.Evaluate[int](`document.querySelectorAll("#nodes .node").length`))
	leaderBadge := value(t, ctx, 5*time.Second, "find the leader's badge",
		chromedp.Evaluate[int](`document.querySelectorAll("#nodes .node[data-node='`+strconv.Itoa(leader)+`'] .badge.leader").length`))
	if cards != 3 || leaderBadge != 1 {
		t.Fatalf("%d node cards, leader badge on node %d: %d; want 3 and 1", cards, leader, leaderBadge)
	}
	screenshot(t, ctx, "overview")

	// The plan first, then the start.
	btn := fmt.Sprintf(`#nodes button[data-node="%d"][data-action="maintenance_on"]`, target)
	within(t, ctx, 20*time.Second, "see the plan", press(btn), chromedp.WaitVisible("#plan li"))
	steps := value(t, ctx, 5*time.Second, "count the plan's steps", chromedp.Evaluate[int](`document.querySelectorAll("#plan li").length`))
	if steps < 3 {
		t.Fatalf("the plan shows %d steps, want the snapshot, maintenance and the moves", steps)
	}
	within(t, ctx, 10*time.Second, "start it", chromedp.Click("#confirm-go"),
		chromedp.WaitVisible(`#actions tr[data-status="running"]`))
	screenshot(t, ctx, "running")

	// The leader dies while the shards move; the page goes on.
	c.Kill(leader)
	c.Leader(20*time.Second, page, target)
	c.StartNode(leader)
	within(t, ctx, 120*time.Second, "the action reaches 100 % on the page",
		chromedp.WaitVisible(`#actions tr[data-status="completed"]`))
	pct := value(t, ctx, 5*time.Second, "read the progress", chromedp.Text(`#actions tr[data-status="completed"] .pct`))
	if pct != "100.0%" {
		t.Errorf("progress shown %q, want 100.0%%", pct)
	}
	// The kill struck mid-action: another leader resumed it.
	var act struct {
		Info struct {
			Events []struct {
				Message string `json:"message"`
			} `json:"events"`
		} `json:"additional_info"`
	}
	c.MustDo(page, "GET", fmt.Sprintf("/v1/nodes/%d/actions/maintenance_on", target), nil, 200).JSON(t, &act)
	resumed := false
	for _, ev := range act.Info.Events {
		resumed = resumed || strings.HasPrefix(ev.Message, "resumed by leader")
	}
	if !resumed {
		t.Errorf("no other leader resumed the action: the kill did not strike mid-action; events %+v", act.Info.Events)
	}
	// The node is emptied: its card shows no shard and the maintenance
	// badge, and a node leads again.
	within(t, ctx, 30*time.Second, "the shards moved away",
		chromedp.WaitNotPresent(fmt.Sprintf(`#nodes .node[data-node="%d"] .shard`, target)),
		chromedp.WaitVisible(fmt.Sprintf(`#nodes .node[data-node="%d"] .badge.maintenance`, target)),
		chromedp.WaitVisible(`#nodes .badge.leader`))
	screenshot(t, ctx, "in-maintenance")

	// maintenance_off, cancelled from the page while it moves the shards
	// back: the row ends cancelled, and its button goes.
	within(t, ctx, 20*time.Second, "start maintenance_off",
		press(fmt.Sprintf(`#nodes button[data-node="%d"][data-action="maintenance_off"]`, target)),
		chromedp.WaitVisible("#plan li"),
		chromedp.Click("#confirm-go"),
		chromedp.WaitVisible(`#actions tr[data-status="running"] button.cancel`))
	within(t, ctx, 60*time.Second, "cancel it",
		press(`#actions tr[data-status="running"] button.cancel`),
		chromedp.WaitVisible(`#actions tr[data-status="cancelled"]`),
		chromedp.WaitNotPresent(`#actions button.cancel`))

	// The node that served the page dies: the page reads another node,
	// and shows the dead one down.
	c.Kill(page)
	within(t, ctx, 60*time.Second, "the page carries on through another node",
		chromedp.WaitVisible(fmt.Sprintf(`#nodes .node.down[data-node="%d"]`, page)))
	via := value(t, ctx, 5*time.Second, "read which node the page reads", chromedp.Text("#via"))
	if !strings.HasPrefix(via, "via https://") || strings.Contains(via, c.Member(page).Cfg.APIAddr) {
		t.Errorf("the page says %q, want another node's address", via)
	}
	screenshot(t, ctx, "served-by-another-node")
}

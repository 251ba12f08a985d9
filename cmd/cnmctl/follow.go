package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// target names the node action that action and watch follow.
type target struct {
	node, action string
	// start submits the action first (with params as its body).
	start  bool
	params string
}

func (a *actionObj) lastEvent() string {
	if ev := a.AdditionalInfo.Events; len(ev) > 0 {
		return ev[len(ev)-1].Message
	}
	return ""
}

func terminal(status string) bool {
	switch status {
	case "completed", "failed", "cancelled", "aborted":
		return true
	}
	return false
}

// actionPath is the API path of a node's action of one kind.
func actionPath(node, action string) string {
	return "/v1/nodes/" + url.PathEscape(node) + "/actions/" + url.PathEscape(action)
}

// Following rides out a node restart or an election: requests that find no
// node or no quorum are retried for this long before cnmctl gives up.
const (
	followWait        = 30 * time.Second
	followRetry       = 500 * time.Millisecond
	followUnreachable = time.Minute
)

// follow starts the action if asked, then reads it with blocking reads
// (each returns as soon as the cluster state moves) until it ends. It
// returns the last action object read and an error unless it completed.
func follow(ctx context.Context, c *client, t target, v view) ([]byte, error) {
	base := actionPath(t.node, t.action)
	taskID := ""
	if t.start {
		resp, err := c.do(ctx, http.MethodPost, base, t.params)
		if err != nil {
			return nil, err
		}
		if resp.status != http.StatusOK {
			return resp.body, fmt.Errorf("start %s on node %s: %w", t.action, t.node, httpError(http.MethodPost, base, resp))
		}
		var a actionObj
		if err := json.Unmarshal(resp.body, &a); err != nil || a.TaskID == "" {
			return resp.body, fmt.Errorf("start %s on node %s: the answer names no task", t.action, t.node)
		}
		taskID = a.TaskID
	}
	defer v.done()
	index := "0"
	var last []byte
	failingSince := time.Time{}
	for {
		resp, err := c.do(ctx, http.MethodGet, base+"?index="+index+"&wait="+followWait.String(), "")
		switch {
		case ctx.Err() != nil:
			return last, ctx.Err()
		case err == nil && resp.status == http.StatusOK:
			failingSince = time.Time{}
		case err == nil && resp.status != http.StatusServiceUnavailable:
			return resp.body, fmt.Errorf("read %s of node %s: HTTP %d %s", t.action, t.node, resp.status, http.StatusText(resp.status))
		case err == nil && errorCode(resp.body) == "not_a_member":
			// The only node cnmctl may ask was removed (by this very action, if it is a
			// remove): it will not answer again.
			return last, fmt.Errorf("%s was removed from the cluster; follow through another node (-url)", c.base())
		default:
			// No node answering, or no quorum: wait for the cluster.
			if failingSince.IsZero() {
				failingSince = time.Now()
			} else if time.Since(failingSince) > followUnreachable {
				if err == nil {
					err = fmt.Errorf("HTTP %d: %s", resp.status, resp.body)
				}
				return last, fmt.Errorf("the cluster did not answer for %s: %w", followUnreachable, err)
			}
			select {
			case <-ctx.Done():
				return last, ctx.Err()
			case <-time.After(followRetry):
			}
			continue
		}
		last = resp.body
		var a actionObj
		if err := json.Unmarshal(resp.body, &a); err != nil {
			return last, fmt.Errorf("read %s of node %s: %w", t.action, t.node, err)
		}
		if taskID == "" {
			taskID = a.TaskID
		} else if a.TaskID != taskID {
			return last, fmt.Errorf("task %s is no longer node %s's latest %s: task %s is", taskID, t.node, t.action, a.TaskID)
		}
		v.update(a)
		if terminal(a.Status) {
			if a.Status == "completed" {
				return last, nil
			}
			if a.ErrorCode != "" {
				return last, actionEnded{fmt.Errorf("%s of node %s %s: %s: %s", t.action, t.node, a.Status, a.ErrorCode, a.ErrorMessage)}
			}
			return last, actionEnded{fmt.Errorf("%s of node %s %s", t.action, t.node, a.Status)}
		}
		if i := resp.header.Get("X-Cnm-Index"); i != "" {
			index = i
		}
	}
}

// view shows an action's progress while it is followed.
type view interface {
	update(a actionObj)
	done()
}

func newView(mode string, w io.Writer) (view, error) {
	if mode == "auto" {
		mode = "lines"
		if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			mode = "bar"
		}
	}
	switch mode {
	case "bar":
		return newBarView(w), nil
	case "lines":
		return &lineView{w: w}, nil
	case "none":
		return noView{}, nil
	}
	return nil, fmt.Errorf("--progress must be auto, bar, lines or none, got %q", mode)
}

// barView redraws one progress bar in place: for terminals. The bar counts
// tenths of a percent, as progress is a float.
type barView struct {
	w   io.Writer
	bar *progressbar.ProgressBar
}

func newBarView(w io.Writer) *barView {
	return &barView{w: w, bar: progressbar.NewOptions(1000,
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetWidth(30),
		progressbar.OptionShowDescriptionAtLineEnd(),
		progressbar.OptionSetPredictTime(false),
		progressbar.OptionSetElapsedTime(true),
		progressbar.OptionThrottle(0),
	)}
}

func (b *barView) update(a actionObj) {
	desc := a.Status
	if e := a.lastEvent(); e != "" {
		desc += ": " + e
	}
	b.bar.Describe(desc)
	_ = b.bar.Set(int(a.Progress * 10))
}

// done leaves the bar as it stands and moves the cursor past it.
func (b *barView) done() {
	_ = b.bar.Exit()
	_, _ = io.WriteString(b.w, "\n")
}

// lineView prints a line for every new event of the action (every step
// done, also those that landed between two reads), and one whenever the
// status or progress changes: for logs and pipes, where a redrawn bar
// would be noise.
type lineView struct {
	w    io.Writer
	last string
	seen int // events printed
}

func (l *lineView) update(a actionObj) {
	evs := a.AdditionalInfo.Events
	for ; l.seen < len(evs); l.seen++ {
		l.print(fmt.Sprintf("%-10s %5.1f%%  %s", a.Status, a.Progress, evs[l.seen].Message))
	}
	l.print(fmt.Sprintf("%-10s %5.1f%%  %s", a.Status, a.Progress, a.lastEvent()))
}

func (l *lineView) print(line string) {
	if line != l.last {
		l.last = line
		fmt.Fprintln(l.w, line)
	}
}

func (*lineView) done() {}

type noView struct{}

func (noView) update(actionObj) {}
func (noView) done()            {}

// errorCode is the error_code of an API error body, or "".
func errorCode(body []byte) string {
	var e struct {
		Code string `json:"error_code"`
	}
	_ = json.Unmarshal(body, &e)
	return e.Code
}

package daemon

import (
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
)

func TestServeProfiles(t *testing.T) {
	addr, stop, err := ServeProfiles("127.0.0.1:0", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	for _, tc := range []struct{ path, want string }{
		{"/debug/pprof/", "goroutine"},
		{"/debug/pprof/heap?debug=1", "heap profile"},
	} {
		resp, err := http.Get("http://" + addr + tc.path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), tc.want) {
			t.Fatalf("GET %s: %d, want 200 with %q", tc.path, resp.StatusCode, tc.want)
		}
	}
}

func TestServeProfiles_LoopbackOnly(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:6060", ":6060", "10.0.0.1:6060", "example.com:6060", "127.0.0.1"} {
		if _, _, err := ServeProfiles(addr, slog.New(slog.DiscardHandler)); err == nil {
			t.Errorf("ServeProfiles(%q) served", addr)
		}
	}
}

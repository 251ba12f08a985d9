package httpapi

import (
	"embed"
	"io/fs"
	"net/http"
)

// uiFiles are the web view's page, script and style, built into cnmd: no
// build step, and every node serves the same view at /ui/.
//
//go:embed ui
var uiFiles embed.FS

// uiHandler serves the web view's files. They hold no data: the page reads
// the API as the user who signs in.
func uiHandler() http.Handler {
	sub, err := fs.Sub(uiFiles, "ui")
	if err != nil {
		panic(err)
	}
	files := http.StripPrefix("/ui/", http.FileServerFS(sub))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		// Only its own script runs; it may read the other nodes' APIs (over
		// HTTPS) when its own node stops answering.
		w.Header().Set("Content-Security-Policy", "default-src 'self'; style-src 'self' 'unsafe-inline'; connect-src 'self' https:")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	})
}

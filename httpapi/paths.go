package httpapi

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"cnm/fsm"
)

// canonicalPath refuses a request path that is not in canonical form: an
// empty segment ("//"), a "." or ".." segment, or a percent-encoded "/" or
// dot segment ("%2f", "%2e%2e"). gorilla/mux would otherwise answer such a
// path with a bare 301 to its cleaned form before authentication, and HTTP
// clients follow a 301 of a POST with a GET: the caller would see a 200 for
// an action that never started. A clear 400 is the only safe answer.
func canonicalPath(r *http.Request) *fsm.Error {
	raw := r.URL.EscapedPath()
	bad := func(why string) *fsm.Error {
		return fsm.ErrInvalidPath.With("path " + strconv.Quote(raw) + " is not canonical: " + why)
	}
	if !strings.HasPrefix(raw, "/") {
		return bad("it must start with /")
	}
	segs := strings.Split(raw[1:], "/")
	for i, seg := range segs {
		if seg == "" {
			// Only a trailing slash may leave a segment empty ("/" itself
			// or "/v1/nodes/"); those are unknown paths, answered 404.
			if i == len(segs)-1 {
				continue
			}
			return bad("it holds an empty segment (//)")
		}
		dec, err := url.PathUnescape(seg)
		if err != nil {
			return bad("it holds a malformed percent-encoding")
		}
		switch {
		case dec == "." || dec == "..":
			return bad("it holds a " + dec + " segment")
		case strings.Contains(dec, "/"):
			return bad("it holds an encoded /")
		}
	}
	return nil
}

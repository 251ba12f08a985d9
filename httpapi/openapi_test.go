package httpapi_test

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"

	"cnm/httpapi"
)

// loadOpenAPI is the served document, loaded and checked as OpenAPI.
func loadOpenAPI(t *testing.T) *openapi3.T {
	t.Helper()
	doc, err := openapi3.NewLoader().LoadFromData(httpapi.OpenAPIJSON)
	if err != nil {
		t.Fatalf("load the OpenAPI document: %v", err)
	}
	if err := doc.Validate(t.Context()); err != nil {
		t.Fatalf("the OpenAPI document is not valid: %v", err)
	}
	return doc
}

// Every route the router serves is in the document, and the document has
// no route the router does not serve.
func TestOpenAPI_DescribesEveryRouteOfTheRouter(t *testing.T) {
	doc := loadOpenAPI(t)
	e := newEnv(t)
	served := map[string]bool{}
	if err := httpapi.WalkRoutes(e.h.(*httpapi.Server), func(method, path string) { served[method+" "+path] = true }); err != nil {
		t.Fatal(err)
	}
	if len(served) < 30 {
		t.Fatalf("the walk found %d routes; the router has more", len(served))
	}
	documented := map[string]bool{}
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			documented[method+" "+path] = true
		}
	}
	for r := range served {
		if !documented[r] {
			t.Errorf("%s is served but not in httpapi/openapi.yaml", r)
		}
	}
	for r := range documented {
		if !served[r] {
			t.Errorf("%s is in httpapi/openapi.yaml but not served", r)
		}
	}
}

// docs/API.md names every route of the document, and the document every
// route docs/API.md names.
func TestOpenAPI_AgreesWithTheAPIReference(t *testing.T) {
	doc := loadOpenAPI(t)
	md, err := os.ReadFile("../docs/API.md")
	if err != nil {
		t.Fatal(err)
	}
	named := map[string]bool{}
	for _, m := range regexp.MustCompile("`(GET|POST|PUT|DELETE) (/[^` ?]*)").FindAllStringSubmatch(string(md), -1) {
		named[m[1]+" "+m[2]] = true
	}
	var documented []string
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			documented = append(documented, method+" "+path)
		}
	}
	slices.Sort(documented)
	for _, r := range documented {
		if !named[r] {
			t.Errorf("docs/API.md does not name %s", r)
		}
	}
	for r := range named {
		// The node-to-node routes and the web view's files are not the API.
		path := strings.Fields(r)[1]
		if !slices.Contains(documented, r) && !strings.HasPrefix(path, "/v1/internal/") && !strings.HasPrefix(path, "/ui/") {
			t.Errorf("docs/API.md names %s, which httpapi/openapi.yaml does not describe", r)
		}
	}
}

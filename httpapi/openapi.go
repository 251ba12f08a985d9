package httpapi

import (
	_ "embed"
	"fmt"
	"net/http"

	"sigs.k8s.io/yaml"
)

// openAPIYAML is the OpenAPI 3.1 document of this API. Tests check that it
// lists every route of routeTable and that live answers match it.
//
//go:embed openapi.yaml
var openAPIYAML []byte

// OpenAPIJSON is the document as GET /v1/openapi.json serves it.
var OpenAPIJSON = mustJSON(openAPIYAML)

func mustJSON(y []byte) []byte {
	j, err := yaml.YAMLToJSON(y)
	if err != nil {
		panic(fmt.Sprintf("openapi.yaml: %v", err))
	}
	return j
}

func (s *Server) openAPI(w http.ResponseWriter, _ *http.Request, _ principal) error {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(OpenAPIJSON)
	return nil
}

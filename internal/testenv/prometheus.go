package testenv

import (
	"encoding/json"
	"fmt"
	"net/http"
)

// PrometheusGet asks the Prometheus at base (http://host:port) for path, an HTTP API path with its
// query, and decodes the data of a successful answer into data; an answer that is not a success
// is an error with Prometheus's own message.
func PrometheusGet(base, path string, data any) error {
	resp, err := http.Get(base + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var body struct {
		Status string          `json:"status"`
		Error  string          `json:"error"`
		Data   json.RawMessage `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if body.Status != "success" {
		return fmt.Errorf("%s: %s", path, body.Error)
	}
	return json.Unmarshal(body.Data, data)
}

// Command gen writes the documents derived from the record types (JSON
// Schemas, FIELDS.md) into the schemas folder. Run it with `go generate ./schemas`.
package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/neubot/neubot/schemas"
)

func main() {
	files, err := schemas.Generated()
	if err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
	for name, body := range files {
		if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
			fmt.Fprintln(os.Stderr, "gen:", err)
			os.Exit(1)
		}
		if err := os.WriteFile(name, body, 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "gen:", err)
			os.Exit(1)
		}
	}
}

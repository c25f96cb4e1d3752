package proto_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/neubot/neubot"

// goFile is one parsed Go file of the repository, with the directory of its
// package relative to the root ("proto/ingest", "collector").
type goFile struct {
	dir  string
	name string
	file *ast.File
}

// parseTree parses every Go file of the repository (tests included).
func parseTree(t *testing.T) []goFile {
	t.Helper()
	fset := token.NewFileSet()
	var files []goFile
	err := filepath.WalkDir("..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if n := d.Name(); path != ".." && (strings.HasPrefix(n, ".") || n == "testdata" || n == "node_modules" || n == "var") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel("..", filepath.Dir(path))
		files = append(files, goFile{dir: filepath.ToSlash(rel), name: filepath.ToSlash(path[3:]), file: f})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 100 {
		t.Fatalf("parsed only %d Go files: not the repository", len(files))
	}
	return files
}

func isProto(dir string) bool { return strings.HasPrefix(dir, "proto/") }

// protoSpecs calls fn with every declaration of kind tok (token.CONST,
// token.TYPE) of the proto packages, tests left out.
func protoSpecs(files []goFile, tok token.Token, fn func(goFile, ast.Spec)) {
	for _, f := range files {
		if !isProto(f.dir) || strings.HasSuffix(f.name, "_test.go") {
			continue
		}
		for _, d := range f.file.Decls {
			if g, ok := d.(*ast.GenDecl); ok && g.Tok == tok {
				for _, spec := range g.Specs {
					fn(f, spec)
				}
			}
		}
	}
}

// protoPaths returns the string constants of the proto packages that are
// HTTP paths ("/..."), each with the packages that declare it.
func protoPaths(t *testing.T, files []goFile) map[string][]string {
	t.Helper()
	paths := map[string][]string{}
	protoSpecs(files, token.CONST, func(f goFile, spec ast.Spec) {
		for _, v := range spec.(*ast.ValueSpec).Values {
			lit, ok := v.(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				continue
			}
			s, _ := strconv.Unquote(lit.Value)
			if strings.HasPrefix(s, "/") && len(s) > 1 && !slices.Contains(paths[s], f.dir) {
				paths[s] = append(paths[s], f.dir)
			}
		}
	})
	for _, want := range []string{"/api/v1/measurements", "/api/v1/rendezvous", "/speedtest/negotiate", "/ndt/v7/download", "/bittorrent/start"} {
		if len(paths[want]) == 0 {
			t.Fatalf("no proto package declares %s: the scan of proto/ is broken (found %v)", want, paths)
		}
	}
	return paths
}

// TestOneHomePerPath: a path of a wire protocol is spelled only in the
// package of that protocol; every other package (tests included) uses its
// constant. (A literal with a query string, "/api/v1/isps?asn=3269", is a
// request of a test, not a route, and is not checked.)
func TestOneHomePerPath(t *testing.T) {
	files := parseTree(t)
	paths := protoPaths(t, files)
	checked := 0
	for _, f := range files {
		if f.dir == "proto" {
			continue // this test's own sanity checks
		}
		ast.Inspect(f.file, func(n ast.Node) bool {
			lit, ok := n.(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				return true
			}
			s, err := strconv.Unquote(lit.Value)
			if err != nil {
				return true
			}
			owners := paths[s]
			if len(owners) == 0 {
				return true
			}
			checked++
			if !slices.Contains(owners, f.dir) {
				t.Errorf("%s spells %q, a path of %s: use its constant", f.name, s, strings.Join(owners, ", "))
			}
			return true
		})
	}
	if checked == 0 {
		t.Fatal("no literal path found even in proto/: the check is broken")
	}
	for p, owners := range paths {
		if len(owners) > 1 {
			t.Errorf("%s is declared by %s: one home per path", p, strings.Join(owners, " and "))
		}
	}
}

// jsonShape is the sorted JSON field names of a struct type, or "" for a
// struct with fewer than two JSON fields (too small to be a message).
func jsonShape(st *ast.StructType) string {
	var names []string
	for _, fld := range st.Fields.List {
		if fld.Tag == nil {
			continue
		}
		tag, _ := strconv.Unquote(fld.Tag.Value)
		name, _, _ := strings.Cut(reflect.StructTag(tag).Get("json"), ",")
		if name != "" && name != "-" {
			names = append(names, name)
		}
	}
	if len(names) < 2 {
		return ""
	}
	sort.Strings(names)
	return strings.Join(names, " ")
}

// TestOneHomePerMessage: no package outside proto/ declares a struct with
// the same JSON fields as a message type of a protocol (a private copy of
// a reply type, decoded on its own terms, drifts from the protocol).
func TestOneHomePerMessage(t *testing.T) {
	files := parseTree(t)
	messages := map[string]string{} // shape -> "proto/x.Type"
	protoSpecs(files, token.TYPE, func(f goFile, spec ast.Spec) {
		ts := spec.(*ast.TypeSpec)
		if st, ok := ts.Type.(*ast.StructType); ok && ast.IsExported(ts.Name.Name) {
			if shape := jsonShape(st); shape != "" {
				messages[shape] = f.dir + "." + ts.Name.Name
			}
		}
	})
	if len(messages) < 10 {
		t.Fatalf("found only %d message types in proto/: the scan is broken", len(messages))
	}
	for _, f := range files {
		if isProto(f.dir) {
			continue
		}
		ast.Inspect(f.file, func(n ast.Node) bool {
			st, ok := n.(*ast.StructType)
			if !ok {
				return true
			}
			if m, dup := messages[jsonShape(st)]; dup {
				t.Errorf("%s declares a struct with the JSON fields of %s: use that type", f.name, m)
			}
			return true
		})
	}
}

// checkImports checks every import of the module by the files of the
// directories top selects: allowed says which (paths relative to the
// module) they may import. It fails when it saw none (a broken scan).
func checkImports(t *testing.T, top func(dir string) bool, allowed func(rest string) bool, rule string) {
	t.Helper()
	n := 0
	for _, f := range parseTree(t) {
		if !top(f.dir) {
			continue
		}
		for _, imp := range f.file.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			if rest, ok := strings.CutPrefix(p, module+"/"); ok {
				n++
				if !allowed(rest) {
					t.Errorf("%s imports %s: %s", f.name, p, rule)
				}
			}
		}
	}
	if n == 0 {
		t.Fatal("no import of the module found: the scan is broken")
	}
}

// TestProtoImports: a protocol package imports the standard library,
// third-party modules, schemas, internal/ and other proto packages, never a
// component (agent, testserver, collector, publish, analytics, cmd, bench),
// so both ends of a protocol can import it.
func TestProtoImports(t *testing.T) {
	checkImports(t, func(dir string) bool { return dir == "proto" || isProto(dir) },
		func(rest string) bool {
			return strings.HasPrefix(rest, "proto/") || strings.HasPrefix(rest, "schemas") || strings.HasPrefix(rest, "internal/")
		}, "a protocol package must not depend on a component")
}

// TestLayering: imports point one way, cmd -> components -> proto ->
// schemas, with internal/ beside them: schemas and internal/ import only
// schemas, internal/ and proto/ packages (e.g. internal/identity signs
// rendezvous requests), so neither can
// pull a component (agent, testserver, collector, analytics, publish) in.
func TestLayering(t *testing.T) {
	checkImports(t, func(dir string) bool {
		top, _, _ := strings.Cut(dir, "/")
		return top == "schemas" || top == "internal"
	}, func(rest string) bool {
		return strings.HasPrefix(rest, "schemas") || strings.HasPrefix(rest, "internal/") || strings.HasPrefix(rest, "proto/")
	}, "schemas/ and internal/ may import only schemas, internal/ and proto/")
}

// TestVersionsMatchSpecs: every protocol package's Version is the version
// its document in spec/ states in its opening lines ("This is version vX"
// or, for ndt7, "version vX" of M-Lab's specification): a change to a
// protocol bumps both, or this fails (the speedtest's constant had stayed
// at v2.4.0 through seven versions of its document).
func TestVersionsMatchSpecs(t *testing.T) {
	// The public API's version is its path prefix; its document is
	// publish/openapi.json, checked by publish's own test.
	noSpec := map[string]bool{"publicapi": true}
	seen := 0
	for _, f := range parseTree(t) {
		if !strings.HasPrefix(f.dir, "proto/") || strings.Count(f.dir, "/") != 1 || strings.HasSuffix(f.name, "_test.go") {
			continue
		}
		name := strings.TrimPrefix(f.dir, "proto/")
		for _, d := range f.file.Decls {
			g, ok := d.(*ast.GenDecl)
			if !ok || g.Tok != token.CONST {
				continue
			}
			for _, sp := range g.Specs {
				vs := sp.(*ast.ValueSpec)
				if len(vs.Names) != 1 || vs.Names[0].Name != "Version" || len(vs.Values) != 1 {
					continue
				}
				lit, ok := vs.Values[0].(*ast.BasicLit)
				if !ok {
					t.Errorf("%s: Version is not a string literal", f.name)
					continue
				}
				v, _ := strconv.Unquote(lit.Value)
				seen++
				if noSpec[name] {
					continue
				}
				doc, err := os.ReadFile(filepath.Join("..", "spec", name+".md"))
				if err != nil {
					t.Errorf("%s: Version %s, but no spec/%s.md: %v", f.name, v, name, err)
					continue
				}
				head := string(doc)
				if len(head) > 600 {
					head = head[:600]
				}
				m := regexp.MustCompile(`version\s+(v\d+\.\d+\.\d+)`).FindStringSubmatch(head)
				if m == nil {
					t.Errorf("spec/%s.md states no version in its opening lines", name)
				} else if m[1] != v {
					t.Errorf("%s: Version %s, but spec/%s.md is version %s", f.name, v, name, m[1])
				}
			}
		}
	}
	if seen < 8 {
		t.Fatalf("found %d protocol Versions: not the repository's proto/", seen)
	}
}

package main

// The README's tour names the functions a message passes through, as
// `file.go:name` or `file.go:Type.method`. These tests keep it honest: every
// name it cites must be declared exactly once in that file, so a rename
// cannot leave the tour pointing at nothing, nor a name at two things; and every file the README and docs/ link to or name must be in
// the repository, so that a clone, with nothing beside it, is complete.

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestReadmeCitesNamesThatExist(t *testing.T) {
	docs, err := filepath.Glob("docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	cite := regexp.MustCompile("`([a-z_]+\\.(?:go|js)):([A-Za-z_][A-Za-z0-9_]*(?:\\.[A-Za-z_][A-Za-z0-9_]*)?)`")
	declared := map[string]map[string]int{}
	for _, doc := range append(docs, "README.md") {
		text, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		cites := cite.FindAllStringSubmatch(string(text), -1)
		if doc == "README.md" && len(cites) < 40 {
			t.Fatalf("found only %d `file:name` citations in README.md; the tour or this pattern changed", len(cites))
		}
		for _, c := range cites {
			file, name := c[1], c[2]
			if declared[file] == nil {
				declared[file] = declaredNames(t, file)
			}
			switch n := declared[file][name]; {
			case n == 0:
				t.Errorf("%s cites %s:%s, which %s does not declare", doc, file, name, file)
			case n > 1:
				t.Errorf("%s cites %s:%s, which names %d declarations there; cite it as Type.method", doc, file, name, n)
			}
		}
	}
}

// declaredNames counts the top-level declarations of a Go file by name
// (functions, types, variables, constants; a method under its own name and
// as Type.method), or the functions of a script in static/.
func declaredNames(t *testing.T, file string) map[string]int {
	names := map[string]int{}
	if strings.HasSuffix(file, ".js") {
		src, err := static.ReadFile("static/" + file)
		if err != nil {
			t.Fatalf("README.md cites %s: %v", file, err)
		}
		for _, m := range regexp.MustCompile(`(?m)^(?:async )?function (\w+)\(`).FindAllStringSubmatch(string(src), -1) {
			names[m[1]]++
		}
		return names
	}
	f, err := parser.ParseFile(token.NewFileSet(), file, nil, parser.SkipObjectResolution)
	if err != nil {
		t.Fatalf("README.md cites %s: %v", file, err)
	}
	for _, decl := range f.Decls {
		switch d := decl.(type) {
		case *ast.FuncDecl:
			names[d.Name.Name]++
			if d.Recv != nil {
				names[receiverType(d.Recv.List[0].Type)+"."+d.Name.Name]++
			}
		case *ast.GenDecl:
			for _, spec := range d.Specs {
				switch s := spec.(type) {
				case *ast.TypeSpec:
					names[s.Name.Name]++
				case *ast.ValueSpec:
					for _, n := range s.Names {
						names[n.Name]++
					}
				}
			}
		}
	}
	return names
}

// receiverType is the name of a method's receiver type: client for
// (c *client).
func receiverType(expr ast.Expr) string {
	if star, ok := expr.(*ast.StarExpr); ok {
		expr = star.X
	}
	if id, ok := expr.(*ast.Ident); ok {
		return id.Name
	}
	return ""
}

// TestDocsNameOnlyFilesInTheRepository checks every relative link of the
// Markdown files, and every `code` span that looks like a file path: each
// must name a file or folder of the repository, and none may climb out of
// it with ../.
func TestDocsNameOnlyFilesInTheRepository(t *testing.T) {
	docs, err := filepath.Glob("docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	docs = append(docs, "README.md", "bench/README.md")
	link := regexp.MustCompile(`\]\(([^)\s]+)\)`)
	code := regexp.MustCompile("`([^`\\s]+)`")
	checked := 0
	for _, doc := range docs {
		text, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		dir := path.Dir(doc)
		for _, m := range link.FindAllStringSubmatch(string(text), -1) {
			target, _, _ := strings.Cut(m[1], "#")
			if target == "" || strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			checked++
			checkRepoPath(t, doc, path.Join(dir, target))
		}
		for _, m := range code.FindAllStringSubmatch(string(text), -1) {
			span := m[1]
			switch {
			case strings.HasPrefix(span, "../"):
				t.Errorf("%s names %s, outside the repository", doc, span)
			case looksLikeFile(span):
				checked++
				// A path in prose is from the root, or from the document's folder.
				if _, err := os.Stat(path.Join(dir, span)); err != nil {
					checkRepoPath(t, doc, span)
				}
			}
		}
	}
	if checked < 20 {
		t.Errorf("only %d paths checked; the patterns or the documents changed", checked)
	}
}

// looksLikeFile reports whether a code span is a file path, such as
// static/chat.js or docs/protocol.md, rather than a URL path, a command or
// a function (file.go:name, which TestReadmeCitesNamesThatExist checks).
func looksLikeFile(span string) bool {
	if strings.ContainsAny(span, ":{}*<>$=") || strings.HasPrefix(span, "/") || strings.Contains(span, "...") {
		return false
	}
	switch path.Ext(span) {
	case ".go", ".md", ".js", ".mjs", ".json", ".html", ".css", ".sh", ".png", ".mod":
		return true
	}
	return strings.HasSuffix(span, "/") && strings.Count(span, "/") == 1 && !strings.Contains(span, ".")
}

// checkRepoPath fails the test unless p, relative to the repository's root,
// exists inside it.
func checkRepoPath(t *testing.T, doc, p string) {
	t.Helper()
	if p = path.Clean(p); p == ".." || strings.HasPrefix(p, "../") {
		t.Errorf("%s links to %s, outside the repository", doc, p)
		return
	}
	if _, err := os.Stat(p); err != nil {
		t.Errorf("%s names %s, which the repository does not have", doc, p)
	}
}

// TestReadmeTokenExample runs the README's example of a backend minting a
// token, as a program of its own, and checks that the server takes the
// token it prints.
func TestReadmeTokenExample(t *testing.T) {
	t.Parallel()
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)```go\n(func chatToken.*?)\n```").FindSubmatch(readme)
	if m == nil {
		t.Fatal("README.md has no func chatToken example")
	}
	dir := t.TempDir()
	program := "package main\n\nimport (\n\t\"crypto/hmac\"\n\t\"crypto/sha256\"\n\t\"encoding/base64\"\n\t\"encoding/json\"\n\t\"fmt\"\n\t\"time\"\n)\n\n" +
		string(m[1]) + "\n\nfunc main() { fmt.Print(chatToken([]byte(\"" + testSecret + "\"), \"Alice\", \"room1\")) }\n"
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(program), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "run", "main.go")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GO111MODULE=off")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the example does not run: %v\n%s", err, out)
	}
	claims, err := verifyToken([]byte(testSecret), string(out), time.Now())
	if err != nil || claims.Name != "Alice" || !claims.mayJoin("room1") || claims.mayJoin("room2") {
		t.Fatalf("the example's token: %+v, %v", claims, err)
	}
}

// TestDocsNameTestsThatExist: a promise in README.md or docs/ names the
// test that holds it, as `TestName`. Each name must be a test, benchmark
// or fuzzer of the package, so that a renamed or deleted test cannot leave
// a promise held by nothing.
func TestDocsNameTestsThatExist(t *testing.T) {
	sources, err := filepath.Glob("*_test.go")
	if err != nil {
		t.Fatal(err)
	}
	defined := map[string]bool{}
	for _, file := range sources {
		for name := range declaredNames(t, file) {
			defined[name] = true
		}
	}
	docs, err := filepath.Glob("docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	named := regexp.MustCompile("`((?:Test|Benchmark|Fuzz)[A-Z][A-Za-z0-9_]*)`")
	checked := 0
	for _, doc := range append(docs, "README.md") {
		text, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range named.FindAllStringSubmatch(string(text), -1) {
			checked++
			if !defined[m[1]] {
				t.Errorf("%s names %s, which no _test.go file defines", doc, m[1])
			}
		}
	}
	if checked < 50 {
		t.Errorf("only %d test names found in the documents; the pattern or the documents changed", checked)
	}
}

// TestReadmeIsTheNewcomersPage keeps the README what issue 30 asks: a page
// of at most 500 lines that starts by running roomchat and its tests;
// reference material lives in docs/.
func TestReadmeIsTheNewcomersPage(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	if lines := strings.Count(string(readme), "\n"); lines > 500 {
		t.Errorf("README.md has %d lines, over 500: move reference material to docs/", lines)
	}
	run, test := strings.Index(string(readme), "\n    go run .\n"), strings.Index(string(readme), "\n    go test ./...\n")
	if first := strings.Index(string(readme), "\n## "); run < 0 || test < run || test > first {
		t.Error("README.md does not start with `go run .` and then `go test ./...`, before its first section")
	}
}

package main

// The README's tour names the functions a message passes through, as
// `file.go:name`. This test keeps it honest: every name it cites must be
// declared in that file, so a rename cannot leave the tour pointing at
// nothing.

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"regexp"
	"strings"
	"testing"
)

func TestReadmeCitesNamesThatExist(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	cites := regexp.MustCompile("`([a-z_]+\\.(?:go|js)):([A-Za-z_][A-Za-z0-9_]*)`").FindAllStringSubmatch(string(readme), -1)
	if len(cites) < 20 {
		t.Fatalf("found only %d `file:name` citations in README.md; the tour or this pattern changed", len(cites))
	}
	declared := map[string]map[string]bool{}
	for _, c := range cites {
		file, name := c[1], c[2]
		if declared[file] == nil {
			declared[file] = declaredNames(t, file)
		}
		if !declared[file][name] {
			t.Errorf("README.md cites %s:%s, which %s does not declare", file, name, file)
		}
	}
}

// declaredNames lists the top-level names of a Go file (functions, methods,
// types, variables, constants) or the functions of a script in static/.
func declaredNames(t *testing.T, file string) map[string]bool {
	names := map[string]bool{}
	if strings.HasSuffix(file, ".js") {
		src, err := static.ReadFile("static/" + file)
		if err != nil {
			t.Fatalf("README.md cites %s: %v", file, err)
		}
		for _, m := range regexp.MustCompile(`(?m)^(?:async )?function (\w+)\(`).FindAllStringSubmatch(string(src), -1) {
			names[m[1]] = true
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
			names[d.Name.Name] = true
		case *ast.GenDecl:
			for _, spec := range d.Specs {
				switch s := spec.(type) {
				case *ast.TypeSpec:
					names[s.Name.Name] = true
				case *ast.ValueSpec:
					for _, n := range s.Names {
						names[n.Name] = true
					}
				}
			}
		}
	}
	return names
}

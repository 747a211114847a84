package main

// The deployment of docs/deploy.md, run for real: roomchat started with
// the flags of deploy/roomchat.service, behind nginx configured by
// deploy/nginx.conf (deploy_nginx_test.go), scraped by Prometheus
// configured by deploy/prometheus.yml (deploy_prometheus_test.go). Each
// file is used as written, but for the values deployValues names (ports,
// paths, the server's name), so that what the document shows is what the
// tests ran. This file checks the files and the document against each
// other, and starts roomchat as the unit does.
//
// nginx, Prometheus (with promtool), systemd-analyze and Chromium come
// from Debian: sudo apt-get install nginx prometheus systemd chromium.
// Without one, its tests skip, saying so; with CI=true they fail instead.

import (
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// deployValues are the only text of the deploy/ files that the tests
// replace, each file's in order (docs/deploy.md lists them). The
// placeholders in braces are filled in when a test runs: free loopback
// ports, and its temporary folder.
var deployValues = map[string][][2]string{
	"roomchat.service": {
		{"127.0.0.1:8000", "127.0.0.1:{app}"},
		{"127.0.0.1:9464", "127.0.0.1:{metrics}"},
		{"chat.example.com", "localhost"},
	},
	"nginx.conf": {
		{"listen 443 ssl;", "listen 127.0.0.1:{https} ssl;"},
		{"listen 80;", "listen 127.0.0.1:{http};"},
		{`set $https_port "";`, `set $https_port ":{https}";`},
		{"/etc/letsencrypt/live/chat.example.com/fullchain.pem", "{dir}/cert.pem"},
		{"/etc/letsencrypt/live/chat.example.com/privkey.pem", "{dir}/key.pem"},
		{"chat.example.com", "localhost"},
		{"127.0.0.1:8000", "127.0.0.1:{app}"},
	},
	"prometheus.yml": {
		{"scrape_interval: 15s", "scrape_interval: 1s"},
		{"127.0.0.1:9464", "127.0.0.1:{metrics}"},
	},
}

// deployFile returns deploy/name with deployValues' replacements made,
// placeholders filled from fill. Each replaced text must be in the file:
// a replacement that finds nothing would leave the file untested.
func deployFile(t testing.TB, name string, fill map[string]string) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("deploy", name))
	if err != nil {
		t.Fatal(err)
	}
	var pairs []string
	for _, v := range deployValues[name] {
		if !strings.Contains(string(raw), v[0]) {
			t.Fatalf("deploy/%s no longer has %q, which the tests replace", name, v[0])
		}
		with := v[1]
		for k, f := range fill {
			with = strings.ReplaceAll(with, "{"+k+"}", f)
		}
		pairs = append(pairs, v[0], with)
	}
	// At each place, the first pair that matches wins: a longer text
	// (a path naming the server) is listed before a part of it.
	return strings.NewReplacer(pairs...).Replace(string(raw))
}

// execStartArgs returns the arguments of a unit's ExecStart, after the
// program. The line is split on spaces, as systemd splits it when it has
// no quotes, escapes, $ or % in it; the test fails if it has.
func execStartArgs(t testing.TB, unit string) []string {
	t.Helper()
	for line := range strings.SplitSeq(unit, "\n") {
		cmdline, ok := strings.CutPrefix(line, "ExecStart=")
		if !ok {
			continue
		}
		if strings.ContainsAny(cmdline, `"'\$%`) {
			t.Fatalf("ExecStart has quotes, escapes or specifiers; the tests split it on spaces: %s", cmdline)
		}
		fields := strings.Fields(cmdline)
		if fields[0] != "/usr/local/bin/roomchat" {
			t.Fatalf("ExecStart runs %s, docs/deploy.md installs /usr/local/bin/roomchat", fields[0])
		}
		return fields[1:]
	}
	t.Fatal("deploy/roomchat.service has no ExecStart")
	return nil
}

// TestDeployFiles checks the deploy/ files without running them: the
// document quotes each as it is, the unit keeps secrets out of its command
// line and passes systemd's checks, nginx waits longer than roomchat's
// pings, and Prometheus reads its configuration.
func TestDeployFiles(t *testing.T) {
	t.Parallel()
	t.Run("docs/deploy.md quotes every file as it is", func(t *testing.T) {
		doc, err := os.ReadFile("docs/deploy.md")
		if err != nil {
			t.Fatal(err)
		}
		quoted := quotedFiles(string(doc))
		files, _ := filepath.Glob("deploy/*")
		if len(files) != len(deployValues) {
			t.Errorf("deploy/ has %d files, the tests know %d", len(files), len(deployValues))
		}
		for _, f := range files {
			raw, _ := os.ReadFile(f)
			switch q, ok := quoted[f]; {
			case !ok:
				t.Errorf("docs/deploy.md does not quote %s", f)
			case q != string(raw):
				t.Errorf("docs/deploy.md's copy of %s differs from the file; copy the file into the document again", f)
			}
		}
	})
	t.Run("docs/deploy.md lists what the tests change", func(t *testing.T) {
		doc, _ := os.ReadFile("docs/deploy.md")
		row := regexp.MustCompile("(?m)^\\| `deploy/([^`]+)` \\| `([^`]+)` \\| `([^`]+)` \\|$")
		listed := map[string][][2]string{}
		for _, m := range row.FindAllStringSubmatch(string(doc), -1) {
			listed[m[1]] = append(listed[m[1]], [2]string{m[2], m[3]})
		}
		if !reflect.DeepEqual(listed, deployValues) {
			t.Errorf("the table in docs/deploy.md says\n%v\nthe tests change\n%v", listed, deployValues)
		}
	})
	t.Run("the unit keeps secrets out of the process list", func(t *testing.T) {
		raw, _ := os.ReadFile("deploy/roomchat.service")
		for _, arg := range execStartArgs(t, string(raw)) {
			if arg == "-redis" || strings.Contains(arg, "redis://") || strings.Contains(arg, "rediss://") {
				t.Errorf("ExecStart names Redis (%s): its URL may hold a password; it goes in the EnvironmentFile", arg)
			}
		}
		if !regexp.MustCompile(`(?m)^EnvironmentFile=`).Match(raw) {
			t.Error("no EnvironmentFile for ROOMCHAT_REDIS_URL")
		}
	})
	t.Run("nginx gives a WebSocket longer than roomchat does", func(t *testing.T) {
		raw, _ := os.ReadFile("deploy/nginx.conf")
		for _, directive := range []string{"proxy_read_timeout", "proxy_send_timeout"} {
			m := regexp.MustCompile(directive + ` (\d+)s;`).FindSubmatch(raw)
			if m == nil {
				t.Errorf("no %s in seconds", directive)
				continue
			}
			if n, _ := strconv.Atoi(string(m[1])); time.Duration(n)*time.Second <= defaultIdleTimeout {
				t.Errorf("%s %ss: nginx would cut off a connection roomchat keeps (%v)", directive, m[1], defaultIdleTimeout)
			}
		}
	})
	t.Run("systemd-analyze verify and security", func(t *testing.T) {
		analyze := findProgram(t, "systemd-analyze", "ROOMCHAT_SYSTEMD_ANALYZE", "systemd")
		// verify wants the program to exist: the test binary stands in.
		unit := filepath.Join(t.TempDir(), "roomchat.service")
		raw, _ := os.ReadFile("deploy/roomchat.service")
		self, err := os.Executable()
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(unit, []byte(strings.Replace(string(raw), "ExecStart=/usr/local/bin/roomchat", "ExecStart="+self, 1)), 0o644)
		if out, err := exec.Command(analyze, "verify", unit).CombinedOutput(); err != nil || len(out) > 0 {
			t.Errorf("systemd-analyze verify: %v\n%s", err, out)
		}
		// An exposure of 2.0 or less is what systemd calls OK; the
		// threshold counts in tenths.
		out, err := exec.Command(analyze, "security", "--offline=yes", "--threshold=20", unit).CombinedOutput()
		if err != nil {
			t.Errorf("systemd-analyze security: %v\n%s", err, out)
		}
	})
	t.Run("promtool check config", func(t *testing.T) {
		promtool := findProgram(t, "promtool", "ROOMCHAT_PROMTOOL", "prometheus")
		if out, err := exec.Command(promtool, "check", "config", "deploy/prometheus.yml").CombinedOutput(); err != nil {
			t.Errorf("%v\n%s", err, out)
		}
	})
}

// quotedFiles finds the files docs/deploy.md quotes: a fenced block whose
// line before names the file with a link, [`deploy/x`](../deploy/x).
func quotedFiles(doc string) map[string]string {
	out := map[string]string{}
	re := regexp.MustCompile("(?m)^\\[`(deploy/[^`]+)`\\]\\(\\.\\./deploy/[^)]+\\):?\\n\\n```[a-z]*\\n((?s:.*?))```\\n")
	for _, m := range re.FindAllStringSubmatch(doc, -1) {
		out[m[1]] = m[2]
	}
	return out
}

// roomchatProcess is the roomchat command, run by a test.
type roomchatProcess struct {
	port, metricsPort string
	stderr            *syncBuffer
}

// startDeployed runs roomchat with deploy/roomchat.service's flags, on
// free ports, then extra flags, which the flag package lets override them.
func startDeployed(t *testing.T, extra ...string) *roomchatProcess {
	t.Helper()
	p := &roomchatProcess{port: strconv.Itoa(freePort(t)), metricsPort: strconv.Itoa(freePort(t))}
	unit := deployFile(t, "roomchat.service", map[string]string{"app": p.port, "metrics": p.metricsPort})
	p.stderr = startMain(t, append(execStartArgs(t, unit), extra...)...)
	return p
}

// jsonLog parses the log, one JSON object a line.
func (p *roomchatProcess) jsonLog(t testing.TB) []map[string]any {
	t.Helper()
	return parseJSONLog(t, p.stderr.String())
}

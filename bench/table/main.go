// Command table turns the JSON lines of compare.sh into the README's
// side-by-side table: for each scenario and server, the median of every run,
// and each server's CPU per delivery as a ratio of the first server's.
//
//	go run ./table < runs.jsonl
//
// One run on a shared machine moves by ±15 %, so no single run is quoted.
// A run during which other processes used more than a tenth of a core
// (other_cpu_util) is left out, as long as a clean run of the same server
// and scenario remains; the table says how many runs each median is of.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"time"
)

// busyRun is the other_cpu_util above which a run is contaminated.
const busyRun = 0.1

// result is the part of one loadchat JSON line that the table uses.
type result struct {
	Name       string  `json:"name"`
	Scenario   string  `json:"scenario"`
	CPUPerDel  float64 `json:"server_cpu_us_per_delivery"`
	RedisCPU   float64 `json:"redis_cpu_us_per_delivery"`
	DelPerSec  float64 `json:"deliveries_per_s"`
	Lost       int64   `json:"lost"`
	Errors     int64   `json:"errors"`
	OtherCPU   float64 `json:"other_cpu_util"`
	KiBPerConn float64 `json:"kib_per_conn"`
	Latency    struct {
		P99 float64 `json:"p99"`
	} `json:"latency_ms"`
}

// measure is one row of a scenario: what it is called and how to read it.
// An optional row is left out when no run has it.
type measure struct {
	label    string
	value    func(result) float64
	format   string
	optional bool
}

var (
	loadMeasures = []measure{
		{"server CPU per delivery (µs)", func(r result) float64 { return r.CPUPerDel }, "%.2f", false},
		{"Redis CPU per delivery (µs)", func(r result) float64 { return r.RedisCPU }, "%.2f", true},
		{"p99 delivery latency (ms)", func(r result) float64 { return r.Latency.P99 }, "%.2f", false},
		{"deliveries/s", func(r result) float64 { return r.DelPerSec }, "%.0f", false},
		{"lost frames or errors (worst run)", nil, "%.0f", false},
	}
	idleMeasures = []measure{
		{"server RSS per connection (KiB)", func(r result) float64 { return r.KiBPerConn }, "%.1f", false},
	}
)

func main() {
	runs, names, scenarios, err := read(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "table:", err)
		os.Exit(1)
	}
	fmt.Printf("Medians of alternating runs, %s.\n", machine())
	fmt.Printf("Server on one core, loadchat on the other; runs with other_cpu_util > %g left out where a clean one remains.\n\n", busyRun)
	fmt.Printf("| scenario | measure | %s |\n", strings.Join(names, " | "))
	fmt.Printf("|---|---|%s\n", strings.Repeat("---|", len(names)))
	for _, sc := range scenarios {
		measures := loadMeasures
		if sc == "idle" {
			measures = idleMeasures
		}
		var counts []string
		for _, n := range names {
			counts = append(counts, fmt.Sprint(len(clean(runs[key{sc, n}]))))
		}
		fmt.Printf("| `%s` | runs | %s |\n", sc, strings.Join(counts, " | "))
		for _, m := range measures {
			var cells []string
			seen := false
			for _, n := range names {
				rs := clean(runs[key{sc, n}])
				cells = append(cells, cell(rs, m))
				seen = seen || (m.value != nil && median(rs, m.value) != 0)
			}
			if m.optional && !seen {
				continue
			}
			fmt.Printf("| | %s | %s |\n", m.label, strings.Join(cells, " | "))
		}
		if sc != "idle" && len(names) > 1 {
			first := median(clean(runs[key{sc, names[0]}]), loadMeasures[0].value)
			var cells []string
			for _, n := range names {
				cells = append(cells, fmt.Sprintf("%.2f×", first/median(clean(runs[key{sc, n}]), loadMeasures[0].value)))
			}
			fmt.Printf("| | %s's CPU per delivery as a share of each | %s |\n", names[0], strings.Join(cells, " | "))
		}
	}
}

// key picks the runs of one server in one scenario.
type key struct{ scenario, name string }

// read parses JSON lines (other lines, such as compare.sh's notes, are
// skipped) and returns the runs with the servers and scenarios in the order
// they first appear.
func read(r io.Reader) (runs map[key][]result, names, scenarios []string, err error) {
	runs = map[key][]result{}
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if !strings.HasPrefix(line, "{") {
			continue
		}
		var res result
		if err := json.Unmarshal([]byte(line), &res); err != nil {
			return nil, nil, nil, fmt.Errorf("%v in %.80s", err, line)
		}
		if !slices.Contains(names, res.Name) {
			names = append(names, res.Name)
		}
		if !slices.Contains(scenarios, res.Scenario) {
			scenarios = append(scenarios, res.Scenario)
		}
		k := key{res.Scenario, res.Name}
		runs[k] = append(runs[k], res)
	}
	if err := sc.Err(); err != nil {
		return nil, nil, nil, err
	}
	if len(runs) == 0 {
		return nil, nil, nil, fmt.Errorf("no JSON lines on standard input")
	}
	return runs, names, scenarios, nil
}

// clean leaves out contaminated runs, unless that would leave none.
func clean(rs []result) []result {
	quiet := slices.DeleteFunc(slices.Clone(rs), func(r result) bool { return r.OtherCPU > busyRun })
	if len(quiet) == 0 {
		return rs
	}
	return quiet
}

// cell formats one measure of one server's runs: the median, or for lost
// frames the worst run, since one lost frame matters.
func cell(rs []result, m measure) string {
	if len(rs) == 0 {
		return "–"
	}
	if m.value == nil {
		worst := int64(0)
		for _, r := range rs {
			worst = max(worst, r.Lost, r.Errors)
		}
		return fmt.Sprint(worst)
	}
	return fmt.Sprintf(m.format, median(rs, m.value))
}

// median of one measure over runs.
func median(rs []result, value func(result) float64) float64 {
	if len(rs) == 0 {
		return 0
	}
	vs := make([]float64, len(rs))
	for i, r := range rs {
		vs[i] = value(r)
	}
	slices.Sort(vs)
	if n := len(vs); n%2 == 0 {
		return (vs[n/2-1] + vs[n/2]) / 2
	}
	return vs[len(vs)/2]
}

// machine says what the numbers were measured on.
func machine() string {
	cpu := "unknown CPU"
	if info, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(info), "\n") {
			if name, ok := strings.CutPrefix(line, "model name"); ok {
				cpu = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(name), ":"))
				break
			}
		}
	}
	node := "no node"
	if out, err := exec.Command("node", "--version").Output(); err == nil {
		node = "Node " + strings.TrimSpace(string(out))
	}
	return fmt.Sprintf("%s: %d cores of %s, %s, %s", time.Now().Format("2006-01-02"), runtime.NumCPU(), cpu, runtime.Version(), node)
}

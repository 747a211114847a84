// Command table turns the JSON lines of compare.sh into the README's
// side-by-side table: for each scenario and server, the median of every run,
// and each server's CPU per delivery as a ratio of the first server's. When
// the scale scenarios are there, a second table shows how each server's cost
// per connection and per delivery grows with their number.
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
	Name        string  `json:"name"`
	Scenario    string  `json:"scenario"`
	Mode        string  `json:"mode"`
	CPUPerDel   float64 `json:"server_cpu_us_per_delivery"`
	RedisCPU    float64 `json:"redis_cpu_us_per_delivery"`
	DelPerSec   float64 `json:"deliveries_per_s"`
	Lost        int64   `json:"lost"`
	Errors      int64   `json:"errors"`
	OtherCPU    float64 `json:"other_cpu_util"`
	ClientCPU   float64 `json:"client_cpu_util"`
	OwnCopy     bool    `json:"own_copy_delivered"`
	KiBPerConn  float64 `json:"kib_per_conn"`
	Handshakes  float64 `json:"handshakes_per_s"`
	Connections float64 `json:"connections"`
	Wanted      float64 `json:"connections_wanted"`
	DialFailed  float64 `json:"dial_failed"`
	Latency     struct {
		P99 float64 `json:"p99"`
	} `json:"latency_ms"`
}

// aggregate is how a row sums up the runs: their median, or the worst of
// them where one bad run matters.
type aggregate int

const (
	medianRun aggregate = iota
	highestRun
	lowestRun
)

// measure is one row of a scenario: what it is called and how to read it.
// An optional row is left out when no run has it.
type measure struct {
	label    string
	value    func(result) float64
	format   string
	optional bool
	agg      aggregate
}

var (
	cpuPerDelivery = measure{"server CPU per delivery (µs)", func(r result) float64 { return r.CPUPerDel }, "%.2f", false, medianRun}
	kibPerConn     = measure{"server RSS per connection (KiB)", func(r result) float64 { return r.KiBPerConn }, "%.1f", false, medianRun}
	loadMeasures   = []measure{
		cpuPerDelivery,
		{"Redis CPU per delivery (µs)", func(r result) float64 { return r.RedisCPU }, "%.2f", true, medianRun},
		{"p99 delivery latency (ms)", func(r result) float64 { return r.Latency.P99 }, "%.2f", false, medianRun},
		{"deliveries/s", func(r result) float64 { return r.DelPerSec }, "%.0f", false, medianRun},
		{"loadchat's own CPU (cores; near 1, it was the limit)", func(r result) float64 { return r.ClientCPU }, "%.2f", false, medianRun},
		{"lost frames or errors (worst run)", func(r result) float64 { return float64(max(r.Lost, r.Errors)) }, "%.0f", false, highestRun},
	}
	idleMeasures = []measure{
		kibPerConn,
		{"handshakes/s (connections opened and joined)", func(r result) float64 { return r.Handshakes }, "%.0f", true, medianRun},
		{"connections open (fewest in a run)", func(r result) float64 { return r.Connections }, "%.0f", true, lowestRun},
		{"dials refused or failed (worst run)", func(r result) float64 { return r.DialFailed }, "%.0f", true, highestRun},
	}
)

// series are the scale scenarios that differ in one number only, and the
// measure that should stay flat as it grows.
var series = []struct {
	label     string
	scenarios []string
	m         measure
}{
	{"idle connections: server RSS per connection (KiB)", []string{"c1k", "c5k", "c15k"}, kibPerConn},
	{"members of one room, 20 msg/s: server CPU per delivery (µs)", []string{"room-100", "room-1k", "bigroom"}, cpuPerDelivery},
}

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
		idle := isIdle(runs, sc, names)
		measures := loadMeasures
		if idle {
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
				seen = seen || median(rs, m.value) != 0
			}
			if m.optional && !seen {
				continue
			}
			fmt.Printf("| | %s | %s |\n", m.label, strings.Join(cells, " | "))
		}
		if !idle && len(names) > 1 {
			first := median(clean(runs[key{sc, names[0]}]), cpuPerDelivery.value)
			var cells []string
			for _, n := range names {
				cells = append(cells, fmt.Sprintf("%.2f×", first/median(clean(runs[key{sc, n}]), cpuPerDelivery.value)))
			}
			fmt.Printf("| | %s's CPU per delivery as a share of each | %s |\n", names[0], strings.Join(cells, " | "))
		}
	}
	var echoing []string
	for _, n := range names {
		for _, sc := range scenarios {
			if slices.ContainsFunc(runs[key{sc, n}], func(r result) bool { return r.OwnCopy }) {
				echoing = append(echoing, n)
				break
			}
		}
	}
	if echoing != nil {
		column := "column"
		if len(echoing) > 1 {
			column = "columns"
		}
		fmt.Printf("\nIn the %s of %s, deliveries include each sender's copy of its own message, which that server sends back to the sender:"+
			" one delivery in a room's members (1 in 100 in `fanout`).\n", column, strings.Join(echoing, ", "))
	}
	growth(runs, names, scenarios)
}

// isIdle says whether a scenario measured idle connections, not load.
func isIdle(runs map[key][]result, sc string, names []string) bool {
	for _, n := range names {
		for _, r := range runs[key{sc, n}] {
			return r.Mode == "idle"
		}
	}
	return false
}

// growth prints, for each series of scale scenarios that ran, each server's
// measure at every size and the largest size's as a multiple of the
// smallest's: near 1.00×, the cost stays flat as the number grows.
func growth(runs map[key][]result, names, scenarios []string) {
	for _, s := range series {
		var have []string
		for _, sc := range s.scenarios {
			if slices.Contains(scenarios, sc) {
				have = append(have, sc)
			}
		}
		if len(have) < 2 {
			continue
		}
		fmt.Printf("\nGrowth, %s:\n\n", s.label)
		fmt.Printf("| server | `%s` | largest ÷ smallest |\n", strings.Join(have, "` | `"))
		fmt.Printf("|---|%s---|\n", strings.Repeat("---|", len(have)))
		behind := false
		for _, n := range names {
			var cells []string
			for _, sc := range have {
				rs := clean(runs[key{sc, n}])
				c := cell(rs, s.m)
				if slices.ContainsFunc(rs, func(r result) bool { return r.Lost > 0 }) {
					c += " †"
					behind = true
				}
				cells = append(cells, c)
			}
			lo := median(clean(runs[key{have[0], n}]), s.m.value)
			hi := median(clean(runs[key{have[len(have)-1], n}]), s.m.value)
			ratio := "–"
			if lo > 0 && hi > 0 {
				ratio = fmt.Sprintf("%.2f×", hi/lo)
			}
			fmt.Printf("| %s | %s | %s |\n", n, strings.Join(cells, " | "), ratio)
		}
		if behind {
			fmt.Println("\n† the server fell behind: frames were still on their way when the run ended. Its CPU went partly to a backlog that" +
				" is not counted as delivered, and a backlog is written in fewer, larger writes: not a like-for-like figure.")
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

// cell formats one measure of one server's runs: the median, or the worst
// run where one bad run matters (a lost frame, a refused connection).
func cell(rs []result, m measure) string {
	if len(rs) == 0 {
		return "–"
	}
	var v float64
	switch m.agg {
	case medianRun:
		v = median(rs, m.value)
	case highestRun:
		v = m.value(rs[0])
		for _, r := range rs[1:] {
			v = max(v, m.value(r))
		}
	case lowestRun:
		v = m.value(rs[0])
		for _, r := range rs[1:] {
			v = min(v, m.value(r))
		}
	}
	return fmt.Sprintf(m.format, v)
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

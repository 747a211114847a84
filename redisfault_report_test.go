package main

// What a fault scenario (redisfault_test.go) found: a row per phase and
// member, the table it logs, and the checks of what the Redis broker
// promises.

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// faultRow is what one member got of one phase's messages.
type faultRow struct {
	sent, said, got, withID, resumed, twice, dup, disorder int
	latencies                                              []time.Duration
}

// lost is what the member never got, live or on the resume.
func (r faultRow) lost() int { return r.sent - r.got - r.resumed }

// rows counts, for each phase, what rd got of the messages sent in it.
func (run *faultRun) rows(rd *faultReader, saidSeqs, excused map[int]bool) []faultRow {
	rows := make([]faultRow, len(run.sc.phases))
	rd.mu.Lock()
	defer rd.mu.Unlock()
	for seq, s := range run.sent {
		row := &rows[s.phase]
		row.sent++
		if saidSeqs[seq] {
			row.said++
		}
		a, got := rd.first[seq]
		switch {
		case rd.resumed[seq]:
			row.resumed++
		case got:
			row.got++
			row.latencies = append(row.latencies, a.at.Sub(s.at))
			if a.id != "" {
				row.withID++
			}
		}
		if excused[seq] {
			continue
		}
		if rd.twice[seq] {
			row.twice++
		}
		row.dup += max(rd.count[seq]-1, 0)
		row.disorder += rd.disorder[seq]
	}
	return rows
}

// inFlightAtLoss is the messages sent before Redis lost its data whose
// said had not come by then (faultScenario.lostAt).
func (run *faultRun) inFlightAtLoss() map[int]bool {
	if run.sc.lostAt == 0 {
		return nil
	}
	placed := run.seqsOf(run.said[:run.saidThen])
	out := map[int]bool{}
	for seq, s := range run.sent {
		if s.at.Before(run.lost) && !placed[seq] {
			out[seq] = true
		}
	}
	return out
}

// saidSeqs is the messages whose said the sender was told.
func (run *faultRun) saidSeqs() map[int]bool { return run.seqsOf(run.said) }

// seqsOf maps ids the sender was told to the messages they are.
func (run *faultRun) seqsOf(said []string) map[int]bool {
	bySeq := map[string]int{}
	for _, rd := range run.readers {
		rd.mu.Lock()
		for seq, a := range rd.first {
			if a.id != "" {
				bySeq[a.id] = seq
			}
		}
		rd.mu.Unlock()
	}
	out := map[int]bool{}
	for _, id := range said {
		if seq, ok := bySeq[id]; ok {
			out[seq] = true
		}
	}
	return out
}

// table is the scenario's report: a row per phase and member, then what
// each server's /healthz said, and when.
func (run *faultRun) table() string {
	var b strings.Builder
	w := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "phase\tmode\tlasted\tmember\tsent\tsaid\tgot\twith id\tresumed\ttwice\tlost\tdup\tdisorder\tp50\tp99\t")
	said := run.saidSeqs()
	perReader := make([][]faultRow, len(run.readers))
	for i, rd := range run.readers {
		perReader[i] = run.rows(rd, said, nil)
	}
	for p, ph := range run.sc.phases {
		for i, rd := range run.readers {
			row := perReader[i][p]
			name, mode, lasted, saidCol := "", "", "", "-"
			if i == 0 {
				name, mode, lasted = ph.name, ph.mode.String(), faultScaled(ph.lasts).String()
			}
			if run.sc.history {
				saidCol = strconv.Itoa(row.said)
			}
			idCols := "-\t-\t-"
			if rd.ids {
				idCols = fmt.Sprintf("%d\t%d\t%d", row.withID, row.resumed, row.twice)
			}
			p50, p99 := percentiles(row.latencies)
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d\t%s\t%d\t%s\t%d\t%d\t%d\t%s\t%s\t\n",
				name, mode, lasted, rd.label, row.sent, saidCol, row.got, idCols, row.lost(), row.dup, row.disorder, p50, p99)
		}
	}
	w.Flush()
	fmt.Fprintf(&b, "B is a member on the other process, A one on the sender's; ids: it asked for history. said: ids the sender was told.\n"+
		"resumed: got only by joining again at the end, ?since= the last id before its ids showed a hole; twice: that replay brought it again,\n"+
		"with an id, though it had come without one; lost: never got; dup: came twice live; disorder: came after a later one.\n")
	for _, rd := range run.readers {
		if rd.ids {
			gap := "no gap"
			if rd.resumeGap != "" {
				gap = rd.resumeGap
			}
			fmt.Fprintf(&b, "%s: its ids showed %d missed and %d new epochs; it resumed from %q (%s)\n", rd.label, rd.idGaps, rd.epochs, rd.resumeAt, gap)
		}
		if lost := run.lostSeqs(rd); lost != "" {
			fmt.Fprintf(&b, "%s never got: %s\n", rd.label, lost)
		}
		if rd.overtaken != "" {
			fmt.Fprintf(&b, "%s got messages out of order, first %s\n", rd.label, rd.overtaken)
		}
	}
	for i, name := range []string{"A (the sender's)", "B"} {
		fmt.Fprintf(&b, "layer of %s: %s\n", name, run.layerStory(run.layers[i]))
	}
	return b.String()
}

// lostSeqs lists the messages rd never got, as ranges with the time each
// range began to be sent, relative to its phase: "57-60 (slow+1.32s)".
func (run *faultRun) lostSeqs(rd *faultReader) string {
	rd.mu.Lock()
	defer rd.mu.Unlock()
	missing := func(seq int) bool { _, got := rd.first[seq]; return !got } // resumed ones are there too
	var parts []string
	for seq := 0; seq < len(run.sent); seq++ {
		if !missing(seq) {
			continue
		}
		end := seq
		for end+1 < len(run.sent) && missing(end+1) {
			end++
		}
		s := run.sent[seq]
		at := fmt.Sprintf("%s+%v", run.sc.phases[s.phase].name, s.at.Sub(run.starts[s.phase]).Round(10*time.Millisecond))
		if end == seq {
			parts = append(parts, fmt.Sprintf("%d (%s)", seq, at))
		} else {
			parts = append(parts, fmt.Sprintf("%d-%d (%s)", seq, end, at))
		}
		seq = end
	}
	return strings.Join(parts, ", ")
}

// layerStory tells when a server's layer went down and came back, each
// time relative to the phase it happened in.
func (run *faultRun) layerStory(events []layerEvent) string {
	if len(events) == 0 {
		return "connected throughout"
	}
	var parts []string
	for _, e := range events {
		p := 0
		for i, start := range run.starts {
			if !e.at.Before(start) {
				p = i
			}
		}
		word := "down"
		if e.connected {
			word = "up"
		}
		parts = append(parts, fmt.Sprintf("%s at %s+%v", word, run.sc.phases[p].name, e.at.Sub(run.starts[p]).Round(10*time.Millisecond)))
	}
	return strings.Join(parts, ", ")
}

// percentiles returns the median and the 99th percentile of ds, formatted.
func percentiles(ds []time.Duration) (p50, p99 string) {
	if len(ds) == 0 {
		return "-", "-"
	}
	slices.Sort(ds)
	at := func(q int) string { return roundLatency(ds[(len(ds)-1)*q/100]) }
	return at(50), at(99)
}

// roundLatency shows a latency with two or three significant digits.
func roundLatency(d time.Duration) string {
	switch {
	case d < 10*time.Millisecond:
		return d.Round(100 * time.Microsecond).String()
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	}
	return d.Round(10 * time.Millisecond).String()
}

// toldOfLoss reports whether the sender was told that message seq reached
// only its own process (not_relayed). The broker says so only when its
// backlog is full, which no scenario here comes near.
func (run *faultRun) toldOfLoss(int) bool { return false }

// check asserts what the broker promises (see the top of this file).
func (run *faultRun) check() {
	t := run.t
	if run.sendErr != nil {
		t.Errorf("sender: %v", run.sendErr)
	}
	said, excused := run.saidSeqs(), run.inFlightAtLoss()
	if len(excused) > 0 {
		t.Logf("in flight when Redis lost its data, and allowed to come twice: %v", slices.Sorted(maps.Keys(excused)))
	}
	for _, rd := range run.readers {
		if len(rd.odd) > 0 {
			t.Errorf("%s got %d frames that are not chat messages, the first %.200s", rd.label, len(rd.odd), rd.odd[0])
		}
		for p, row := range run.rows(rd, said, excused) {
			phase := run.sc.phases[p].name
			if row.dup > 0 {
				t.Errorf("%s, %s: %d messages came twice", rd.label, phase, row.dup)
			}
			if row.disorder > 0 {
				t.Errorf("%s, %s: %d messages came out of order, the first %s", rd.label, phase, row.disorder, rd.overtaken)
			}
			if rd.srv == run.a && row.got < row.sent {
				// Chat within the sender's process goes on, whatever Redis does.
				t.Errorf("%s, on the sender's process, got %d of the %d messages of %s", rd.label, row.got, row.sent, phase)
			}
			if row.twice > 0 {
				t.Errorf("%s, %s: a resume brought %d messages again, under another id", rd.label, phase, row.twice)
			}
		}
		if !run.sc.history {
			continue
		}
		rd.mu.Lock()
		var untold []int
		for seq := range run.sent {
			if _, got := rd.first[seq]; !got && !run.toldOfLoss(seq) && len(rd.gaps) == 0 {
				untold = append(untold, seq)
			}
		}
		rd.mu.Unlock()
		if len(untold) > 0 {
			t.Errorf("%s never got %d messages, and their sender was not told: %v", rd.label, len(untold), untold)
		}
	}
}

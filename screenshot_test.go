package main

// Pictures of tabs: what the README's screenshots are made of.

import (
	"bytes"
	"encoding/base64"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"os"
	"testing"
)

// screenshot returns the tab as a PNG.
func (tb *tab) screenshot(t testing.TB) image.Image {
	t.Helper()
	var shot struct{ Data string }
	// A tab in the background paints nothing, and its capture never ends.
	tb.b.call(t, tb.session, "Page.bringToFront", nil, nil)
	tb.b.call(t, tb.session, "Page.captureScreenshot", map[string]any{"format": "png"}, &shot)
	raw, err := base64.StdEncoding.DecodeString(shot.Data)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// writeScreenshot puts tabs side by side in one PNG.
func writeScreenshot(t testing.TB, path string, tabs ...*tab) {
	t.Helper()
	const gap = 16
	var shots []image.Image
	w, h := -gap, 0
	for _, tb := range tabs {
		shot := tb.screenshot(t)
		shots = append(shots, shot)
		w += gap + shot.Bounds().Dx()
		h = max(h, shot.Bounds().Dy())
	}
	out := image.NewRGBA(image.Rect(0, 0, w, h))
	draw.Draw(out, out.Bounds(), image.NewUniform(color.RGBA{0x9a, 0xa3, 0xb0, 0xff}), image.Point{}, draw.Src)
	x := 0
	for _, shot := range shots {
		draw.Draw(out, shot.Bounds().Add(image.Pt(x, 0)), shot, image.Point{}, draw.Src)
		x += shot.Bounds().Dx() + gap
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, out); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s", path)
}

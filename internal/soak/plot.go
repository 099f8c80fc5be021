package soak

import (
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"os"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
)

// plotPNG draws one panel per resource over time.
func plotPNG(path string, s []Sample) error {
	const w, panelH, margin = 900, 180, 50
	series := []struct {
		name string
		c    color.RGBA
		f    func(Sample) float64
	}{
		{"goroutines", color.RGBA{31, 119, 180, 255}, func(x Sample) float64 { return float64(x.Goroutines) }},
		{"live heap (MB)", color.RGBA{214, 39, 40, 255}, func(x Sample) float64 { return x.HeapMB }},
		{"RSS (MB)", color.RGBA{44, 160, 44, 255}, func(x Sample) float64 { return x.RSSMB }},
		{"open file descriptors", color.RGBA{148, 103, 189, 255}, func(x Sample) float64 { return float64(x.FDs) }},
	}
	img := image.NewRGBA(image.Rect(0, 0, w, len(series)*panelH+30))
	draw.Draw(img, img.Bounds(), image.White, image.Point{}, draw.Src)
	text := func(x, y int, str string) {
		d := font.Drawer{
			Dst:  img,
			Src:  image.Black,
			Face: basicfont.Face7x13,
			Dot:  fixed.P(x, y),
		}
		d.DrawString(str)
	}
	if len(s) > 0 {
		text(margin, 20, fmt.Sprintf("kaiser soak: %d samples over %.0f s", len(s), s[len(s)-1].At.Seconds()))
	}
	for i, sr := range series {
		top := 30 + i*panelH
		x0, x1, y0, y1 := margin, w-20, top+20, top+panelH-25
		for x := x0; x <= x1; x++ {
			img.Set(x, y1, color.Gray{160})
		}
		for y := y0; y <= y1; y++ {
			img.Set(x0, y, color.Gray{160})
		}
		hi := 0.0
		for _, x := range s {
			hi = max(hi, sr.f(x))
		}
		if hi == 0 {
			hi = 1
		}
		hi *= 1.1
		text(x0+5, top+14, fmt.Sprintf("%s (max %.1f)", sr.name, hi/1.1))
		text(5, y0+8, fmt.Sprintf("%.0f", hi))
		text(5, y1, "0")
		var px, py int
		for j, x := range s {
			cx := x0 + int(float64(j)/float64(max(len(s)-1, 1))*float64(x1-x0))
			cy := y1 - int(sr.f(x)/hi*float64(y1-y0))
			if j > 0 {
				line(img, px, py, cx, cy, sr.c)
			}
			px, py = cx, cy
		}
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return png.Encode(f, img)
}

// line draws with Bresenham's algorithm.
func line(img *image.RGBA, x0, y0, x1, y1 int, c color.RGBA) {
	dx, dy := abs(x1-x0), -abs(y1-y0)
	sx, sy := 1, 1
	if x0 > x1 {
		sx = -1
	}
	if y0 > y1 {
		sy = -1
	}
	err := dx + dy
	for {
		img.Set(x0, y0, c)
		img.Set(x0, y0+1, c)
		if x0 == x1 && y0 == y1 {
			return
		}
		e2 := 2 * err
		if e2 >= dy {
			err += dy
			x0 += sx
		}
		if e2 <= dx {
			err += dx
			y0 += sy
		}
	}
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

package classify

import (
	"testing"
	"time"
)

func TestNextPacificMidnight(t *testing.T) {
	utc := func(s string) time.Time {
		t.Helper()
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	for _, tc := range []struct{ name, now, want string }{
		{"winter afternoon", "2025-01-15T22:00:00Z", "2025-01-16T08:00:00Z"},
		{"summer morning", "2025-03-14T15:09:26Z", "2025-03-15T07:00:00Z"},
		{"at midnight the next one", "2025-03-15T07:00:00Z", "2025-03-16T07:00:00Z"},
		{"a nanosecond before midnight", "2025-03-15T06:59:59.999999999Z", "2025-03-15T07:00:00Z"},
		// DST starts 2025-03-09 at 02:00 PST; that day has 23 hours.
		{"eve of DST start", "2025-03-08T20:00:00Z", "2025-03-09T08:00:00Z"},
		{"DST start day before the switch", "2025-03-09T09:30:00Z", "2025-03-10T07:00:00Z"},
		{"DST start day after the switch", "2025-03-09T10:30:00Z", "2025-03-10T07:00:00Z"},
		// DST ends 2025-11-02 at 02:00 PDT; 01:00–02:00 happens twice.
		{"eve of DST end", "2025-11-02T03:00:00Z", "2025-11-02T07:00:00Z"},
		{"first 01:30 of DST end day", "2025-11-02T08:30:00Z", "2025-11-03T08:00:00Z"},
		{"second 01:30 of DST end day", "2025-11-02T09:30:00Z", "2025-11-03T08:00:00Z"},
		{"new year's eve", "2026-12-31T23:00:00Z", "2027-01-01T08:00:00Z"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := nextPacificMidnight(utc(tc.now)); !got.Equal(utc(tc.want)) {
				t.Errorf("nextPacificMidnight(%s) = %s; want %s", tc.now, got.UTC().Format(time.RFC3339), tc.want)
			}
		})
	}
}

// TestNextPacificMidnightMatchesTZData compares with the zone database,
// when the system or Go's own copy has one, every 20 minutes of 2024-2030.
func TestNextPacificMidnightMatchesTZData(t *testing.T) {
	la, err := time.LoadLocation("America/Los_Angeles")
	if err != nil {
		t.Skipf("no tzdata: %v", err)
	}
	end := time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC)
	for now := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC); now.Before(end); now = now.Add(20 * time.Minute) {
		l := now.In(la)
		want := time.Date(l.Year(), l.Month(), l.Day()+1, 0, 0, 0, 0, la)
		if got := nextPacificMidnight(now); !got.Equal(want) {
			t.Fatalf("nextPacificMidnight(%s) = %s; want %s", now.Format(time.RFC3339), got.UTC(), want.UTC())
		}
	}
}

package classify

import "time"

// Google resets the Gemini API's daily quotas at midnight US Pacific time
// (https://ai.google.dev/gemini-api/docs/rate-limits). The zone is computed
// here rather than loaded: a static binary in a scratch image has no
// tzdata, and embedding time/tzdata costs some 450 KB for one zone.

// US daylight saving time since 2007 (15 U.S.C. § 260a): from 02:00
// local standard time on the second Sunday of March to 02:00 local
// daylight time on the first Sunday of November.
const (
	pst = -8 * time.Hour
	pdt = -7 * time.Hour
)

// nextPacificMidnight returns the first midnight in US Pacific time
// (America/Los_Angeles) strictly after now.
func nextPacificMidnight(now time.Time) time.Time {
	now = now.UTC()
	local := now.Add(pacificOffset(now))
	y, m, d := local.Date()
	day := time.Date(y, m, d+1, 0, 0, 0, 0, time.UTC) // the next local date, as if UTC
	return day.Add(-midnightOffset(day))
}

// pacificOffset is the Pacific zone's offset from UTC at instant t.
func pacificOffset(t time.Time) time.Duration {
	y := t.Year()
	start := secondSundayOfMarch(y).Add(2*time.Hour - pst) // 02:00 PST in UTC
	end := firstSundayOfNovember(y).Add(2*time.Hour - pdt) // 02:00 PDT in UTC
	if !t.Before(start) && t.Before(end) {
		return pdt
	}
	return pst
}

// midnightOffset is the offset in force at 00:00 local of the date day
// (given as midnight UTC of that date). The switches happen at 02:00, so
// midnight of the switching Sunday still has the old offset.
func midnightOffset(day time.Time) time.Duration {
	y := day.Year()
	if day.After(secondSundayOfMarch(y)) && !day.After(firstSundayOfNovember(y)) {
		return pdt
	}
	return pst
}

// secondSundayOfMarch is that date of year y, at midnight UTC.
func secondSundayOfMarch(y int) time.Time {
	first := time.Date(y, time.March, 1, 0, 0, 0, 0, time.UTC)
	return first.AddDate(0, 0, (7-int(first.Weekday()))%7+7)
}

// firstSundayOfNovember is that date of year y, at midnight UTC.
func firstSundayOfNovember(y int) time.Time {
	first := time.Date(y, time.November, 1, 0, 0, 0, 0, time.UTC)
	return first.AddDate(0, 0, (7-int(first.Weekday()))%7)
}

package keymanager

import (
	"testing"
	"time"
)

// TestRetriesAfterExclusionsDoNotWalkTheDenied: half the keys may not use
// a model, every other one in the file (keys of one project are often
// listed together, or interleaved as here). Requests for the model, each
// retrying on the next key after a model fault, must not walk from one
// denied key to the next: when a key leaves the model's rotation, the key
// that was next stays next. (make scenarios' "models" lost a request to
// four denied keys in a row.)
func TestRetriesAfterExclusionsDoNotWalkTheDenied(t *testing.T) {
	for _, size := range []string{"small", "large"} {
		t.Run(size, func(t *testing.T) {
			m := New(testKeys(10), Options{})
			if size == "large" {
				asLarge(m)
			}
			denied := func(k *Key) bool {
				for i, x := range m.Keys() {
					if x == k {
						return i%2 == 0
					}
				}
				return false
			}
			worst := 0
			for range 40 {
				attempts := 0
				for attempts < 4 {
					attempts++
					k, _, err := m.NextFor("gpt-4o")
					if err != nil {
						t.Fatal(err)
					}
					if !denied(k) {
						break
					}
					m.ExcludeModel(k, "gpt-4o", time.Hour)
					if size == "large" {
						settle(t, m)
					}
				}
				worst = max(worst, attempts)
			}
			if worst > 2 {
				t.Errorf("a request took %d attempts; want at most 2 (one denied key, then a capable one)", worst)
			}
		})
	}
}

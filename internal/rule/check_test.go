package rule

import (
	"fmt"
	"strings"
	"testing"
)

// catalog is a hub configuration for the existence checks.
type catalog struct {
	actuators map[string]bool // "esp:gpio"
	sensors   map[string]bool // "esp:gpio:type"
}

func (c catalog) DeviceConfigured(espID string) bool {
	for k := range c.actuators {
		if strings.HasPrefix(k, espID+":") {
			return true
		}
	}
	for k := range c.sensors {
		if strings.HasPrefix(k, espID+":") {
			return true
		}
	}
	return false
}

func (c catalog) ActuatorExists(espID string, gpio int) bool {
	return c.actuators[fmt.Sprintf("%s:%d", espID, gpio)]
}

func (c catalog) SensorExists(espID string, gpio int, typ string) bool {
	for k := range c.sensors {
		if typ == "" && strings.HasPrefix(k, fmt.Sprintf("%s:%d:", espID, gpio)) || k == fmt.Sprintf("%s:%d:%s", espID, gpio, typ) {
			return true
		}
	}
	return false
}

// examples is the configuration docs/domain.md §6.13 assumes.
var examples = catalog{
	actuators: map[string]bool{"ESP_12AB34:25": true, "ESP_12AB34:26": true, "ESP_A1B2C3:27": true, "ESP_A1B2C3:32": true},
	sensors: map[string]bool{"ESP_12AB34:21:sht31_temp": true, "ESP_12AB34:4:ds18b20": true,
		"ESP_A1B2C3:34:moisture": true, "ESP_A1B2C3:35:ec": true},
}

func TestCheckExamplesPass(t *testing.T) {
	var stored []Rule
	for i, doc := range []string{ventFan, heater, fertigation} {
		r := mustDecode(t, doc)
		r.ID = fmt.Sprintf("r%d", i)
		if f := Check(&r, examples, stored); len(f.Errors)+len(f.Warnings) > 0 {
			t.Errorf("%s: %+v", r.Name, f)
		}
		stored = append(stored, r)
	}
}

func TestCheckMissingTargets(t *testing.T) {
	r := mustDecode(t, `{"name":"abc","conditions":[
		{"type":"sensor","esp_id":"ESP_12AB34","gpio":21,"sensor_type":"ds18b20","operator":">","value":1},
		{"type":"hysteresis","esp_id":"ESP_NEW","gpio":3,"activate_above":2,"deactivate_below":1}],
		"actions":[{"type":"actuator","esp_id":"ESP_12AB34","gpio":27},
		{"type":"sequence","steps":[{"action":{"type":"actuator","esp_id":"ESP_A1B2C3","gpio":33}}]},
		{"type":"actuator","esp_id":"ESP_NEW","gpio":4}]}`)
	f := Check(&r, examples, nil)
	issueAt(t, f.Errors, "conditions.0", CodeNotFound) // wrong type on a configured pin
	issueAt(t, f.Errors, "actions.0", CodeNotFound)
	issueAt(t, f.Errors, "actions.1.steps.0.action", CodeNotFound)
	issueAt(t, f.Warnings, "conditions.1", CodeNotFound) // device without configuration
	issueAt(t, f.Warnings, "actions.2", CodeNotFound)
	if len(f.Errors) != 3 || len(f.Warnings) != 2 {
		t.Errorf("findings = %+v", f)
	}
}

// loopRule reads sensor pin in and drives pin out on device D.
func loopRule(t *testing.T, id string, in, out int, enabled bool) Rule {
	t.Helper()
	r := mustDecode(t, fmt.Sprintf(`{"name":"rule %s","enabled":%v,"conditions":[
		{"type":"sensor","esp_id":"D","gpio":%d,"operator":">","value":1}],
		"actions":[{"type":"actuator","esp_id":"D","gpio":%d}]}`, id, enabled, in, out))
	r.ID = id
	return r
}

func TestFindLoop(t *testing.T) {
	a := loopRule(t, "a", 1, 2, true)
	b := loopRule(t, "b", 2, 3, true)
	c := loopRule(t, "c", 3, 1, true)
	if chain := FindLoop(&c, []Rule{a, b}); len(chain) != 4 || chain[0].ID != "c" || chain[3].ID != "c" {
		t.Errorf("three-rule cycle: %v", ids(chain))
	}
	f := Check(&c, catalog{}, []Rule{a, b})
	issueAt(t, f.Errors, "actions", CodeLoop)
	if !strings.Contains(f.Errors[len(f.Errors)-1].Message, `"rule c" → "rule a" → "rule b" → "rule c"`) {
		t.Errorf("loop message does not name the chain: %v", f.Errors)
	}

	self := loopRule(t, "s", 5, 5, true)
	if chain := FindLoop(&self, nil); len(chain) != 2 {
		t.Errorf("self-edge: %v", ids(chain))
	}

	bOff := loopRule(t, "b", 2, 3, false)
	if chain := FindLoop(&c, []Rule{a, bOff}); chain != nil {
		t.Errorf("a disabled rule breaks the cycle, got %v", ids(chain))
	}
	cOff := loopRule(t, "c", 3, 1, false)
	if chain := FindLoop(&cOff, []Rule{a, b}); chain != nil {
		t.Errorf("a disabled candidate cannot loop, got %v", ids(chain))
	}
	// The candidate replaces its stored version: the old c closed the cycle,
	// the new one drives another pin.
	cNew := loopRule(t, "c", 3, 9, true)
	if chain := FindLoop(&cNew, []Rule{a, b, c}); chain != nil {
		t.Errorf("stored version used instead of the candidate: %v", ids(chain))
	}
}

func TestFindLoopThroughSequenceAndHysteresis(t *testing.T) {
	a := mustDecode(t, `{"name":"seq","conditions":[{"type":"sensor","esp_id":"D","gpio":1,"operator":">","value":1}],
		"actions":[{"type":"sequence","steps":[{"delay_seconds":1},{"action":{"type":"actuator","esp_id":"D","gpio":2}}]}]}`)
	a.ID = "a"
	b := mustDecode(t, `{"name":"hys","conditions":[{"type":"hysteresis","esp_id":"D","gpio":2,"activate_above":2,"deactivate_below":1}],
		"actions":[{"type":"actuator","esp_id":"D","gpio":1}]}`)
	b.ID = "b"
	if chain := FindLoop(&a, []Rule{b}); len(chain) != 3 {
		t.Errorf("cycle through a sequence step and a hysteresis leaf: %v", ids(chain))
	}
}

func TestFindLoopDepthLimit(t *testing.T) {
	// A chain of 12 rules closing on the first is beyond 10 hops.
	var rules []Rule
	for i := range 12 {
		rules = append(rules, loopRule(t, fmt.Sprintf("r%02d", i), i, (i+1)%12, true))
	}
	if chain := FindLoop(&rules[0], rules[1:]); chain != nil {
		t.Errorf("cycle of 12 found beyond the depth limit: %v", ids(chain))
	}
	short := rules[:9]
	short[8] = loopRule(t, "r08", 8, 0, true)
	if chain := FindLoop(&short[0], short[1:]); len(chain) != 10 {
		t.Errorf("cycle of 9 rules: %v", ids(chain))
	}
}

func TestCheckDuplicateWarns(t *testing.T) {
	a := mustDecode(t, ventFan)
	a.ID = "a"
	b := mustDecode(t, strings.Replace(ventFan, "Vent fan when hot", "Another fan", 1))
	b.ID = "b"
	f := Check(&b, examples, []Rule{a})
	issueAt(t, f.Warnings, "conditions", CodeDuplicate)
	if len(f.Errors) != 0 {
		t.Errorf("a duplicate is only a warning: %+v", f.Errors)
	}
	if f := Check(&a, examples, []Rule{a}); len(f.Warnings) != 0 {
		t.Errorf("a rule is not a duplicate of its stored self: %+v", f.Warnings)
	}
}

func ids(chain []*Rule) []string {
	var out []string
	for _, r := range chain {
		out = append(out, r.ID)
	}
	return out
}

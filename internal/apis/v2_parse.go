package apis

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
)

func decodeJSONObject(b []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("Invalid JSON payload received. %v", err)
	}
	if dec.More() {
		return nil, fmt.Errorf("Invalid JSON payload received. Unexpected data after the object")
	}
	if m == nil {
		m = map[string]any{}
	}
	return m, nil
}

// ParseV2Service decodes a v2 Service request body (see the table in v2_service_types.go).
// With current and an update mask (comma-separated field paths, "*" for all),
// only the masked fields are taken from the body and the rest from current;
// without, the body replaces the whole service. The result's Etag is the
// body's.
func ParseV2Service(body []byte, current *V2Service, updateMask string) (*V2Service, error) {
	req, err := decodeJSONObject(body)
	if err != nil {
		return nil, err
	}
	if err := cleanV2("service", req, v2ServiceSchema); err != nil {
		return nil, err
	}
	etag, _ := req["etag"].(string)
	merged := req
	if current != nil && strings.TrimSpace(updateMask) != "" && strings.TrimSpace(updateMask) != "*" {
		cur := *current
		cur.Etag = ""
		b, err := json.Marshal(&cur)
		if err != nil {
			return nil, err
		}
		if merged, err = decodeJSONObject(b); err != nil {
			return nil, err
		}
		if err := cleanV2("service", merged, v2ServiceSchema); err != nil {
			return nil, err
		}
		for _, p := range strings.Split(updateMask, ",") {
			if err := applyMaskPath(merged, req, strings.TrimSpace(p)); err != nil {
				return nil, err
			}
		}
	}
	b, err := json.Marshal(merged)
	if err != nil {
		return nil, err
	}
	var v V2Service
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, fmt.Errorf("Invalid JSON payload received. %v", err)
	}
	v.Etag = etag
	return &v, nil
}

// applyMaskPath copies the field at path (e.g. "template.scaling") from src
// to dst, removing it from dst when src does not set it.
func applyMaskPath(dst, src map[string]any, path string) error {
	if path == "" {
		return nil
	}
	segs := strings.Split(path, ".")
	sch := v2ServiceSchema
	for i, seg := range segs {
		segs[i] = lowerCamel(seg)
		f, ok := sch[segs[i]]
		if !ok || f.output {
			return fieldErr("update_mask", "%q is not a field of Service that can be updated", path)
		}
		if i < len(segs)-1 {
			if f.obj == nil || segs[i] == "containers" || segs[i] == "traffic" || segs[i] == "env" || segs[i] == "ports" {
				return fieldErr("update_mask", "%q: %s cannot be updated in part", path, segs[i])
			}
			sch = f.obj
		}
	}
	last := segs[len(segs)-1]
	from, to := src, dst
	for _, seg := range segs[:len(segs)-1] {
		next, _ := from[seg].(map[string]any)
		from = next
		nextTo, ok := to[seg].(map[string]any)
		if !ok {
			nextTo = map[string]any{}
			to[seg] = nextTo
		}
		to = nextTo
	}
	if v, ok := from[last]; ok {
		to[last] = v
	} else {
		delete(to, last)
	}
	return nil
}

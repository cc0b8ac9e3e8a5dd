package apis

import (
	"encoding/json"
	"fmt"
)

// V2Operation is google.longrunning.Operation. Metadata and Response are
// google.protobuf.Any in JSON: an object whose "@type" names the message.
type V2Operation struct {
	Name     string          `json:"name"`
	Metadata json.RawMessage `json:"metadata,omitempty"`
	Done     bool            `json:"done"`
	Error    *V2Status       `json:"error,omitempty"`
	Response json.RawMessage `json:"response,omitempty"`
}

// V2Status is google.rpc.Status.
type V2Status struct {
	Code    int32  `json:"code"`
	Message string `json:"message,omitempty"`
}

// V2AnyJSON renders v as a google.protobuf.Any of typeURL: v's fields
// beside "@type".
func V2AnyJSON(typeURL string, v any) (json.RawMessage, error) {
	body, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	if len(body) < 2 || body[0] != '{' {
		return nil, fmt.Errorf("apis: %T does not encode as a JSON object", v)
	}
	head, err := json.Marshal(map[string]string{"@type": typeURL})
	if err != nil {
		return nil, err
	}
	if string(body) == "{}" {
		return head, nil
	}
	out := append(head[:len(head)-1:len(head)-1], ',')
	return append(out, body[1:]...), nil
}

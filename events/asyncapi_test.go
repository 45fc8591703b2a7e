package events_test

import (
	"cmp"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/orderstream/orderstream/events"
)

// eventTypes is every event type of the contract; TestAsyncAPI_eventTypes
// keeps the list complete.
var eventTypes = events.Contract()

// TestAsyncAPI_eventTypes: events.Contract holds every type of the package
// with an EventType method, found in its source.
func TestAsyncAPI_eventTypes(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	var declared []string
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			if fn, ok := d.(*ast.FuncDecl); ok && fn.Recv != nil && fn.Name.Name == "EventType" {
				recv := fn.Recv.List[0].Type
				if star, ok := recv.(*ast.StarExpr); ok {
					recv = star.X
				}
				declared = append(declared, recv.(*ast.Ident).Name)
			}
		}
	}
	var listed []string
	for _, e := range eventTypes {
		listed = append(listed, reflect.TypeOf(e).Name())
	}
	slices.Sort(declared)
	slices.Sort(listed)
	if !slices.Equal(declared, listed) {
		t.Errorf("event types declared %v, listed in eventTypes %v", declared, listed)
	}
}

// TestAsyncAPI_describesEveryEvent: docs/asyncapi.yaml has a message for
// every event type, on the channel of its stream, with its event_type, the
// metadata every message carries, and a payload schema with exactly the
// fields the type's JSON has, required where they are always there, of
// their JSON types.
func TestAsyncAPI_describesEveryEvent(t *testing.T) {
	t.Parallel()
	doc := readAsyncAPI(t)
	if v := doc.get("asyncapi"); !strings.HasPrefix(v.(string), "3.0.") {
		t.Errorf("asyncapi = %v, want 3.0.x", v)
	}
	channels := map[string]string{} // address → channel key
	for key, ch := range doc.get("channels").(map[string]any) {
		channels[ch.(map[string]any)["address"].(string)] = key
	}
	streams := []string{events.StreamDeadLetter}
	for _, e := range eventTypes {
		streams = append(streams, e.Stream())
	}
	for _, stream := range streams {
		if channels[stream] == "" {
			t.Errorf("no channel has the address %q", stream)
		}
	}
	metadata := doc.get("components", "schemas", "Metadata", "properties").(map[string]any)
	for _, key := range []string{events.MetadataEventType, events.MetadataCorrelationID, "traceparent"} {
		if metadata[key] == nil {
			t.Errorf("the Metadata schema lacks %q", key)
		}
	}
	for _, e := range eventTypes {
		t.Run(e.EventType(), func(t *testing.T) {
			msg, ok := doc.get("components", "messages", e.EventType()).(map[string]any)
			if !ok {
				t.Fatalf("components.messages has no %s", e.EventType())
			}
			if msg["name"] != e.EventType() {
				t.Errorf("name = %v", msg["name"])
			}
			onChannel, _ := doc.get("channels", channels[e.Stream()], "messages", e.EventType(), "$ref").(string)
			if onChannel != "#/components/messages/"+e.EventType() {
				t.Errorf("the channel of stream %q does not list %s", e.Stream(), e.EventType())
			}
			if got := doc.get("components", "messages", e.EventType(), "headers", "allOf", "1", "properties", "event_type", "const"); got != e.EventType() {
				t.Errorf("headers' event_type = %v, want const %s", got, e.EventType())
			}
			if got := doc.get("components", "messages", e.EventType(), "headers", "allOf", "0", "$ref"); got != "#/components/schemas/Metadata" {
				t.Errorf("headers are not the Metadata schema: %v", got)
			}
			doc.compare(t, e.EventType(), reflect.TypeOf(e), msg["payload"].(map[string]any))
		})
	}
	for name := range doc.get("components", "messages").(map[string]any) {
		if name != "DeadLetter" && !slices.ContainsFunc(eventTypes, func(e events.Event) bool { return e.EventType() == name }) {
			t.Errorf("components.messages has %s, which is no event type", name)
		}
	}
}

// TestAsyncAPI_operations: every stream of the contract has a send
// operation (the forwarder's) listing each message of its channel, every
// operation's messages are messages of its channel, and every $ref in the
// document resolves.
func TestAsyncAPI_operations(t *testing.T) {
	t.Parallel()
	doc := readAsyncAPI(t)
	sent := map[string][]string{} // channel $ref → message $refs of send operations
	for name, op := range doc.get("operations").(map[string]any) {
		op := op.(map[string]any)
		channel, _ := doc.get("operations", name, "channel", "$ref").(string)
		if op["action"] != "send" && op["action"] != "receive" {
			t.Errorf("operation %s: action %v", name, op["action"])
		}
		list, _ := op["messages"].([]any)
		if len(list) == 0 {
			t.Errorf("operation %s lists no messages", name)
		}
		for _, m := range list {
			ref, _ := m.(map[string]any)["$ref"].(string)
			if !strings.HasPrefix(ref, channel+"/messages/") {
				t.Errorf("operation %s: message %s is not of its channel %s", name, ref, channel)
			}
			if op["action"] == "send" {
				sent[channel] = append(sent[channel], strings.TrimPrefix(ref, channel+"/messages/"))
			}
		}
		if op["action"] == "receive" && (op["x-consumer-group"] == nil || op["x-handler"] == nil) {
			t.Errorf("receive operation %s names no x-consumer-group and x-handler", name)
		}
	}
	for key, ch := range doc.get("channels").(map[string]any) {
		var messages []string
		for name := range ch.(map[string]any)["messages"].(map[string]any) {
			messages = append(messages, name)
		}
		got := sent["#/channels/"+key]
		slices.Sort(messages)
		slices.Sort(got)
		if !slices.Equal(got, messages) {
			t.Errorf("channel %s: messages %v, sent by operations %v", key, messages, got)
		}
	}
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch node := v.(type) {
		case map[string]any:
			if ref, ok := node["$ref"].(string); ok {
				if doc.get(strings.Split(strings.TrimPrefix(ref, "#/"), "/")...) == nil {
					t.Errorf("%s: $ref %s does not resolve", path, ref)
				}
			}
			for k, child := range node {
				walk(path+"."+k, child)
			}
		case []any:
			for _, child := range node {
				walk(path+"[]", child)
			}
		}
	}
	walk("", doc.root)
}

// asyncAPI is the AsyncAPI document, as YAML decodes it.
type asyncAPI struct{ root map[string]any }

func readAsyncAPI(t *testing.T) asyncAPI {
	t.Helper()
	data, err := os.ReadFile("../docs/asyncapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var root map[string]any
	if err := yaml.Unmarshal(data, &root); err != nil {
		t.Fatalf("docs/asyncapi.yaml: %v", err)
	}
	return asyncAPI{root}
}

// get walks the document by keys (a list's index as a string); nil where
// there is nothing.
func (d asyncAPI) get(keys ...string) any {
	var v any = d.root
	for _, k := range keys {
		switch node := v.(type) {
		case map[string]any:
			v = node[k]
		case []any:
			i := slices.Index([]string{"0", "1", "2", "3"}, k)
			if i < 0 || i >= len(node) {
				return nil
			}
			v = node[i]
		default:
			return nil
		}
	}
	return v
}

// resolve follows a schema's $ref within the document.
func (d asyncAPI) resolve(schema map[string]any) map[string]any {
	for {
		ref, ok := schema["$ref"].(string)
		if !ok {
			return schema
		}
		next, _ := d.get(strings.Split(strings.TrimPrefix(ref, "#/"), "/")...).(map[string]any)
		if next == nil {
			return map[string]any{"$ref": "unresolved " + ref}
		}
		schema = next
	}
}

var timeType = reflect.TypeOf(time.Time{})

// compare fails t where schema is not what encoding/json makes of a
// value of type typ.
func (d asyncAPI) compare(t *testing.T, path string, typ reflect.Type, schema map[string]any) {
	t.Helper()
	schema = d.resolve(schema)
	want := map[reflect.Kind]string{
		reflect.String: "string", reflect.Bool: "boolean", reflect.Slice: "array", reflect.Map: "object", reflect.Struct: "object",
		reflect.Int: "integer", reflect.Int32: "integer", reflect.Int64: "integer", reflect.Float64: "number",
	}[typ.Kind()]
	switch {
	case typ == timeType:
		if schema["type"] != "string" || schema["format"] != "date-time" {
			t.Errorf("%s: type %v format %v, want a string of format date-time", path, schema["type"], schema["format"])
		}
		return
	case typ.Kind() == reflect.Slice && typ.Elem().Kind() == reflect.Uint8:
		want = "string" // base64
	case want == "":
		t.Fatalf("%s: a Go %s; teach the test its JSON type", path, typ)
	}
	if schema["type"] != want {
		t.Errorf("%s: type %v, want %s", path, schema["type"], want)
	}
	switch typ.Kind() {
	case reflect.Slice:
		if typ.Elem().Kind() != reflect.Uint8 {
			items, _ := schema["items"].(map[string]any)
			d.compare(t, path+"[]", typ.Elem(), items)
		}
	case reflect.Struct:
		props, _ := schema["properties"].(map[string]any)
		var fields, required []string
		for i := range typ.NumField() {
			f := typ.Field(i)
			name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
			if !f.IsExported() || name == "-" {
				continue
			}
			name = cmp.Or(name, f.Name)
			fields = append(fields, name)
			if !strings.Contains(opts, "omitempty") && !strings.Contains(opts, "omitzero") {
				required = append(required, name)
			}
			if p, ok := props[name].(map[string]any); ok {
				d.compare(t, path+"."+name, f.Type, p)
			}
		}
		var documented, documentedRequired []string
		for name := range props {
			documented = append(documented, name)
		}
		listed, _ := schema["required"].([]any)
		for _, r := range listed {
			documentedRequired = append(documentedRequired, r.(string))
		}
		for _, l := range [][]string{fields, required, documented, documentedRequired} {
			slices.Sort(l)
		}
		if !slices.Equal(fields, documented) {
			t.Errorf("%s: properties %v, want the JSON fields %v", path, documented, fields)
		}
		if !slices.Equal(required, documentedRequired) {
			t.Errorf("%s: required %v, want the fields never left out %v", path, documentedRequired, required)
		}
		if schema["additionalProperties"] != false {
			t.Errorf("%s: additionalProperties %v, want false: the JSON has no other fields", path, schema["additionalProperties"])
		}
	}
}

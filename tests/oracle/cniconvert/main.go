// cniconvert: the result-conversion oracle for tests/test_types.py.
//
// It runs libcni's own code (Debian's golang-github-appc-cni-dev, GOPATH mode) on
// results: each case {"result": {...}, "to": "0.2.0"} is decoded with
// create.CreateFromBytes (the result's own cniVersion; none means 0.1.0, as libcni does),
// converted with GetAsVersion(to) and printed with encoding/json, or becomes
// {"error": "..."} when decoding or conversion fails.
//
// stdin holds one case (output: one document) or a JSON list of cases (output: a JSON
// list of documents, in order), so a test run needs one process for many cases.
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/containernetworking/cni/pkg/types/create"
	// The result types register their creators and converters in init().
	_ "github.com/containernetworking/cni/pkg/types/020"
	_ "github.com/containernetworking/cni/pkg/types/040"
	_ "github.com/containernetworking/cni/pkg/types/100"
)

type request struct {
	Result json.RawMessage `json:"result"`
	To     string          `json:"to"`
}

func errorDoc(err error) json.RawMessage {
	out, _ := json.Marshal(map[string]string{"error": err.Error()})
	return out
}

func convert(raw json.RawMessage) (out json.RawMessage) {
	// A libcni panic (it has some on odd input) is that case's error, not the batch's.
	defer func() {
		if r := recover(); r != nil {
			out = errorDoc(fmt.Errorf("panic: %v", r))
		}
	}()
	var req request
	if err := json.Unmarshal(raw, &req); err != nil {
		return errorDoc(fmt.Errorf("bad request: %w", err))
	}
	if len(req.Result) == 0 {
		return errorDoc(fmt.Errorf("bad request: no result"))
	}
	res, err := create.CreateFromBytes(req.Result)
	if err != nil {
		return errorDoc(err)
	}
	conv, err := res.GetAsVersion(req.To)
	if err != nil {
		return errorDoc(err)
	}
	doc, err := json.Marshal(conv)
	if err != nil {
		return errorDoc(err)
	}
	return doc
}

func main() {
	in, err := io.ReadAll(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "cniconvert: reading stdin:", err)
		os.Exit(2)
	}
	in = bytes.TrimSpace(in)
	var out []byte
	if len(in) > 0 && in[0] == '[' {
		var cases []json.RawMessage
		if err := json.Unmarshal(in, &cases); err != nil {
			fmt.Fprintln(os.Stderr, "cniconvert: bad case list:", err)
			os.Exit(2)
		}
		docs := make([]json.RawMessage, len(cases))
		for i, c := range cases {
			docs[i] = convert(c)
		}
		out, err = json.Marshal(docs)
		if err != nil {
			fmt.Fprintln(os.Stderr, "cniconvert:", err)
			os.Exit(2)
		}
	} else {
		out = convert(in)
	}
	os.Stdout.Write(out)
	os.Stdout.Write([]byte("\n"))
}

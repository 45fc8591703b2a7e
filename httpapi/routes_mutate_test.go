package httpapi_test

import (
	"math/rand/v2"
	"regexp"
	"strings"
)

// oddStrings are the values that break assumptions: bytes PostgreSQL's
// text refuses, invalid UTF-8, UUID and stream-id forms, escapes, numbers
// beyond every range, and length.
var oddStrings = []string{
	"", " ", "\x00", "%00", "\xff", "\xc3", "é", "ключ", "\u202e", "\t", "%", "%zz", "%2F", "%25", "/", "..", "./",
	"{", "}", "{{order}}", "urn:uuid:{order}", "{ORDER}", "{order-nodash}", "{order}", "{deadletter}", "{undecodable}", "{cursor}",
	`"`, `\`, "'; DROP TABLE orders; --", "-", "+", "0", "-1", "0-0", "1-", "-1-1", "18446744073709551616-0",
	"1-18446744073709551616", "99999999999999999999", "1e400", "1.5", "0x10", "NaN", "null", "true", "[]", "{}",
	"Bearer {token}", "bearer {token}", "Bearer  {token}", "Basic YWRtaW46YWRtaW4=", "Bearer {jwt}", "Bearer {customer}",
	"Bearer {other}", "bearer {jwt}x", "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJjLTEifQ.",
	"application/json", "application/json; charset=utf-8", "application/json; charset=latin1", "application/json;;",
	strings.Repeat("x", 129), strings.Repeat("k", 256), strings.Repeat("é", 65),
}

// oddJSON are JSON values to put in place of one in a body.
var oddJSON = []string{
	`"\u0000"`, `"a\u0000b"`, `"\ud800"`, `"\xff"`, `"é"`, `""`, `"` + strings.Repeat("c", 65) + `"`, `"SKU-1"`,
	`0`, `-1`, `1`, `10001`, `1.5`, `1e400`, `-1e400`, `99999999999999999999`, `9223372036854775808`, `1000000001`,
	`null`, `true`, `[]`, `{}`, `[{"sku":"SKU-1","quantity":1}]`, `{"a":[[[1]]]}`,
}

// readHeaders are the headers the API reads, and a few it should not care
// about.
var readHeaders = []string{"Idempotency-Key", "X-Request-ID", "Content-Type", "Authorization", "Traceparent", "Accept", "X-Forwarded-For"}

var methods = []string{"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "get", "BREW"}

var jsonToken = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?|true|false|null`)

// mutate applies one to four random changes to r.
func mutate(rng *rand.Rand, r request) request {
	r.Body = append([]byte(nil), r.Body...)
	for range 1 + rng.IntN(4) {
		odd := oddStrings[rng.IntN(len(oddStrings))]
		switch rng.IntN(10) {
		case 0:
			r.Method = methods[rng.IntN(len(methods))]
		case 1: // a path segment
			segs := strings.Split(r.Target, "/")
			segs[1+rng.IntN(len(segs)-1)] = odd
			r.Target = strings.Join(segs, "/")
		case 2:
			r.Target = insert(rng, r.Target, odd)
		case 3:
			sep := "?"
			if strings.Contains(r.Target, "?") {
				sep = "&"
			}
			r.Target += sep + "q=" + odd
		case 4: // a header the API reads, maybe once more
			r.Header += "\n" + readHeaders[rng.IntN(len(readHeaders))] + ": " + odd
		case 5: // a header's value
			lines := strings.Split(r.Header, "\n")
			i := rng.IntN(len(lines))
			name, _, _ := strings.Cut(lines[i], ":")
			lines[i] = name + ": " + odd
			r.Header = strings.Join(lines, "\n")
		case 6: // a header dropped
			lines := strings.Split(r.Header, "\n")
			i := rng.IntN(len(lines))
			r.Header = strings.Join(append(lines[:i], lines[i+1:]...), "\n")
		case 7, 8: // a JSON value
			if loc := jsonToken.FindAllIndex(r.Body, -1); len(loc) > 0 {
				l := loc[rng.IntN(len(loc))]
				v := oddJSON[rng.IntN(len(oddJSON))]
				r.Body = append(r.Body[:l[0]:l[0]], append([]byte(v), r.Body[l[1]:]...)...)
			} else {
				r.Body = []byte(insert(rng, string(r.Body), odd))
			}
		case 9: // bytes of the body
			if len(r.Body) > 0 && rng.IntN(2) == 0 {
				i := rng.IntN(len(r.Body))
				r.Body = append(r.Body[:i:i], r.Body[min(len(r.Body), i+1+rng.IntN(8)):]...)
			} else {
				r.Body = []byte(insert(rng, string(r.Body), odd))
			}
		}
	}
	return r
}

func insert(rng *rand.Rand, s, what string) string {
	i := rng.IntN(len(s) + 1)
	return s[:i] + what + s[i:]
}

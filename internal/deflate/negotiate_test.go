package deflate

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseExtensions(t *testing.T) {
	tests := []struct {
		in   []string
		want string // FormatExtensions of the result; "ERR" for an error
	}{
		{nil, ""},
		{[]string{""}, ""},
		{[]string{" , ,"}, ""},
		{[]string{"permessage-deflate"}, "permessage-deflate"},
		{[]string{"permessage-deflate; client_max_window_bits"}, "permessage-deflate; client_max_window_bits"},
		{[]string{"permessage-deflate;client_max_window_bits=10;server_no_context_takeover"},
			"permessage-deflate; client_max_window_bits=10; server_no_context_takeover"},
		{[]string{"permessage-deflate ; client_max_window_bits = \"10\" "}, "permessage-deflate; client_max_window_bits=10"},
		{[]string{"\tfoo;a=\"b\\c\", bar"}, "foo; a=bc, bar"},
		{[]string{"a", "b; x=1", "c"}, "a, b; x=1, c"},
		{[]string{"a,,b,"}, "a, b"},
		{[]string{"x-webkit-deflate-frame, permessage-deflate; client_max_window_bits"},
			"x-webkit-deflate-frame, permessage-deflate; client_max_window_bits"},
		// Malformed.
		{[]string{";"}, "ERR"},
		{[]string{"permessage-deflate;"}, "ERR"},
		{[]string{"permessage-deflate; ;a"}, "ERR"},
		{[]string{"permessage-deflate; a="}, "ERR"},
		{[]string{"permessage-deflate; a=b=c"}, "ERR"},
		{[]string{"permessage-deflate; a=\"b"}, "ERR"},
		{[]string{"permessage-deflate; a=\"b c\""}, "ERR"}, // quoted value not a token
		{[]string{"permessage-deflate; a=\"\""}, "ERR"},
		{[]string{"permessage-deflate; a=\"b\\\""}, "ERR"},
		{[]string{"perm essage"}, "ERR"},
		{[]string{"permessage-deflate x"}, "ERR"},
		{[]string{"a, b", "c d"}, "ERR"},
		{[]string{"a=1"}, "ERR"},
		{[]string{"a; b=\"1\"x"}, "ERR"},
		{[]string{"é"}, "ERR"},
		{[]string{"a\r\n"}, "ERR"},
	}
	for _, tt := range tests {
		exts, err := ParseExtensions(tt.in)
		got := FormatExtensions(exts)
		if err != nil {
			got = "ERR"
		}
		if got != tt.want {
			t.Errorf("ParseExtensions(%q) = %q (%v), want %q", tt.in, got, err, tt.want)
		}
	}
}

func mustParse(t *testing.T, s string) []Extension {
	t.Helper()
	exts, err := ParseExtensions([]string{s})
	if err != nil {
		t.Fatalf("ParseExtensions(%q): %v", s, err)
	}
	return exts
}

func TestNegotiateServer(t *testing.T) {
	p := func(snct, cnct bool, sbits, cbits int) Params {
		return Params{ServerNoContextTakeover: snct, ClientNoContextTakeover: cnct, ServerMaxWindowBits: sbits, ClientMaxWindowBits: cbits}
	}
	tests := []struct {
		name     string
		offer    string
		cfg      ServerConfig
		ok       bool
		response string
		params   Params
	}{
		{"Chrome", "permessage-deflate; client_max_window_bits", ServerConfig{},
			true, "permessage-deflate", p(false, false, 15, 15)},
		{"Firefox", "permessage-deflate", ServerConfig{},
			true, "permessage-deflate", p(false, false, 15, 15)},
		{"Node ws", "permessage-deflate; client_max_window_bits", ServerConfig{ClientMaxWindowBits: 10},
			true, "permessage-deflate; client_max_window_bits=10", p(false, false, 15, 10)},
		{"Python websockets", "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12", ServerConfig{},
			true, "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12", p(false, false, 12, 12)},
		{"gorilla", "permessage-deflate; server_no_context_takeover; client_no_context_takeover", ServerConfig{},
			true, "permessage-deflate; server_no_context_takeover; client_no_context_takeover", p(true, true, 15, 15)},
		{"Safari old webkit first", "x-webkit-deflate-frame, permessage-deflate; client_max_window_bits", ServerConfig{},
			true, "permessage-deflate", p(false, false, 15, 15)},
		{"no offer", "x-webkit-deflate-frame", ServerConfig{}, false, "", Params{}},
		{"server config no takeover", "permessage-deflate", ServerConfig{NoContextTakeover: true, ClientNoContextTakeover: true},
			true, "permessage-deflate; server_no_context_takeover; client_no_context_takeover", p(true, true, 15, 15)},
		{"server window config unasked", "permessage-deflate", ServerConfig{ServerMaxWindowBits: 11},
			true, "permessage-deflate; server_max_window_bits=11", p(false, false, 11, 15)},
		{"client window without client support", "permessage-deflate", ServerConfig{ClientMaxWindowBits: 9},
			true, "permessage-deflate", p(false, false, 15, 15)},
		{"asked smaller than config", "permessage-deflate; server_max_window_bits=10", ServerConfig{ServerMaxWindowBits: 12},
			true, "permessage-deflate; server_max_window_bits=10", p(false, false, 10, 15)},
		{"asked larger than config", "permessage-deflate; server_max_window_bits=14", ServerConfig{ServerMaxWindowBits: 12},
			true, "permessage-deflate; server_max_window_bits=12", p(false, false, 12, 15)},
		{"asked 8", "permessage-deflate; server_max_window_bits=8", ServerConfig{},
			true, "permessage-deflate; server_max_window_bits=8", p(false, false, 8, 15)},
		{"asked 15", "permessage-deflate; server_max_window_bits=15", ServerConfig{},
			true, "permessage-deflate; server_max_window_bits=15", p(false, false, 15, 15)},
		{"client hint below config", "permessage-deflate; client_max_window_bits=9", ServerConfig{ClientMaxWindowBits: 12},
			true, "permessage-deflate; client_max_window_bits=9", p(false, false, 15, 9)},
		{"quoted values", `permessage-deflate; server_max_window_bits="10"; client_max_window_bits="11"`, ServerConfig{},
			true, "permessage-deflate; server_max_window_bits=10; client_max_window_bits=11", p(false, false, 10, 11)},
		{"upper case", "PerMessage-Deflate; Server_No_Context_Takeover", ServerConfig{},
			true, "permessage-deflate; server_no_context_takeover", p(true, false, 15, 15)},
		{"first invalid, second taken", "permessage-deflate; server_max_window_bits=16, permessage-deflate; client_max_window_bits",
			ServerConfig{ClientMaxWindowBits: 13}, true, "permessage-deflate; client_max_window_bits=13", p(false, false, 15, 13)},
		{"several valid: first wins", "permessage-deflate; server_max_window_bits=10, permessage-deflate", ServerConfig{},
			true, "permessage-deflate; server_max_window_bits=10", p(false, false, 10, 15)},
		// Invalid offers: declined.
		{"leading zero", "permessage-deflate; server_max_window_bits=08", ServerConfig{}, false, "", Params{}},
		{"16", "permessage-deflate; server_max_window_bits=16", ServerConfig{}, false, "", Params{}},
		{"7", "permessage-deflate; client_max_window_bits=7", ServerConfig{}, false, "", Params{}},
		{"sign", "permessage-deflate; client_max_window_bits=+9", ServerConfig{}, false, "", Params{}},
		{"server bits without value", "permessage-deflate; server_max_window_bits", ServerConfig{}, false, "", Params{}},
		{"unknown param", "permessage-deflate; foo", ServerConfig{}, false, "", Params{}},
		{"duplicate", "permessage-deflate; server_no_context_takeover; server_no_context_takeover", ServerConfig{}, false, "", Params{}},
		{"duplicate bits", "permessage-deflate; client_max_window_bits; client_max_window_bits=10", ServerConfig{}, false, "", Params{}},
		{"value on flag", "permessage-deflate; client_no_context_takeover=1", ServerConfig{}, false, "", Params{}},
		{"all invalid", "permessage-deflate; a, permessage-deflate; server_max_window_bits=100", ServerConfig{}, false, "", Params{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			params, response, ok := NegotiateServer(mustParse(t, tt.offer), tt.cfg)
			if ok != tt.ok || response != tt.response || params != tt.params {
				t.Errorf("NegotiateServer(%q)\n got %v %q %+v\nwant %v %q %+v", tt.offer, ok, response, params, tt.ok, tt.response, tt.params)
			}
		})
	}
}

func TestClientOffer(t *testing.T) {
	tests := []struct {
		cfg  ClientConfig
		want string
	}{
		{ClientConfig{}, "permessage-deflate; client_max_window_bits"},
		{ClientConfig{NoContextTakeover: true, ServerNoContextTakeover: true, ClientMaxWindowBits: 10, ServerMaxWindowBits: 9},
			"permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=9; client_max_window_bits=10"},
		{ClientConfig{ServerMaxWindowBits: 3}, "permessage-deflate; server_max_window_bits=8; client_max_window_bits"},
	}
	for _, tt := range tests {
		if got := ClientOffer(tt.cfg); got != tt.want {
			t.Errorf("ClientOffer(%+v) = %q, want %q", tt.cfg, got, tt.want)
		}
		// Every offer is one this package's server accepts.
		if _, _, ok := NegotiateServer(mustParse(t, ClientOffer(tt.cfg)), ServerConfig{}); !ok {
			t.Errorf("server declines %q", ClientOffer(tt.cfg))
		}
	}
}

func TestAcceptResponse(t *testing.T) {
	tests := []struct {
		name     string
		cfg      ClientConfig
		response string
		ok       bool
		params   Params
		err      string // substring; "" for none
	}{
		{"declined", ClientConfig{}, "", false, Params{}, ""},
		{"plain", ClientConfig{}, "permessage-deflate", true, Params{ServerMaxWindowBits: 15, ClientMaxWindowBits: 15}, ""},
		{"everything", ClientConfig{}, "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10; client_max_window_bits=9",
			true, Params{true, true, 10, 9}, ""},
		{"own no takeover", ClientConfig{NoContextTakeover: true}, "permessage-deflate",
			true, Params{ClientNoContextTakeover: true, ServerMaxWindowBits: 15, ClientMaxWindowBits: 15}, ""},
		{"client bits above own cap", ClientConfig{ClientMaxWindowBits: 10}, "permessage-deflate; client_max_window_bits=12",
			true, Params{ServerMaxWindowBits: 15, ClientMaxWindowBits: 10}, ""},
		{"server bits below asked", ClientConfig{ServerMaxWindowBits: 12}, "permessage-deflate; server_max_window_bits=9",
			true, Params{ServerMaxWindowBits: 9, ClientMaxWindowBits: 15}, ""},
		{"server bits unasked", ClientConfig{}, "permessage-deflate; server_max_window_bits=8",
			true, Params{ServerMaxWindowBits: 8, ClientMaxWindowBits: 15}, ""},
		{"server bits above asked", ClientConfig{ServerMaxWindowBits: 12}, "permessage-deflate; server_max_window_bits=13",
			false, Params{}, "above the 12 offered"},
		{"server bits missing", ClientConfig{ServerMaxWindowBits: 12}, "permessage-deflate", false, Params{}, "did not accept server_max_window_bits"},
		{"server takeover refused", ClientConfig{ServerNoContextTakeover: true}, "permessage-deflate", false, Params{}, "did not accept server_no_context_takeover"},
		{"other extension", ClientConfig{}, "x-foo", false, Params{}, `server chose extension "x-foo", which was not offered`},
		{"twice", ClientConfig{}, "permessage-deflate, permessage-deflate", false, Params{}, "twice"},
		{"client bits without value", ClientConfig{}, "permessage-deflate; client_max_window_bits", false, Params{}, "needs a value"},
		{"bad value", ClientConfig{}, "permessage-deflate; server_max_window_bits=16", false, Params{}, "want 8 to 15"},
		{"unknown", ClientConfig{}, "permessage-deflate; foo=1", false, Params{}, "unknown parameter"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var exts []Extension
			if tt.response != "" {
				exts = mustParse(t, tt.response)
			}
			params, ok, err := AcceptResponse(exts, tt.cfg)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) || !strings.HasPrefix(err.Error(), "websocket: ") {
					t.Fatalf("error %v, want one containing %q", err, tt.err)
				}
				return
			}
			if err != nil || ok != tt.ok || params != tt.params {
				t.Errorf("got %+v %v %v, want %+v %v", params, ok, err, tt.params, tt.ok)
			}
		})
	}
}

// TestNegotiationAgrees: the client accepts what the server answers to the
// client's own offer, and both see the same Params.
func TestNegotiationAgrees(t *testing.T) {
	var clients []ClientConfig
	for _, b := range []int{0, 8, 12, 15} {
		clients = append(clients, ClientConfig{ClientMaxWindowBits: b}, ClientConfig{ServerMaxWindowBits: b, NoContextTakeover: b == 12},
			ClientConfig{ServerNoContextTakeover: true, ServerMaxWindowBits: b, ClientMaxWindowBits: b})
	}
	servers := []ServerConfig{{}, {NoContextTakeover: true}, {ClientNoContextTakeover: true, ClientMaxWindowBits: 9}, {ServerMaxWindowBits: 10, ClientMaxWindowBits: 14}}
	for _, cc := range clients {
		for _, sc := range servers {
			sp, resp, ok := NegotiateServer(mustParse(t, ClientOffer(cc)), sc)
			if !ok {
				t.Fatalf("%+v %+v: declined", cc, sc)
			}
			cp, ok, err := AcceptResponse(mustParse(t, resp), cc)
			if err != nil || !ok {
				t.Fatalf("%+v %+v: client rejects %q: %v", cc, sc, resp, err)
			}
			if !reflect.DeepEqual(sp, cp) {
				t.Errorf("%+v %+v: server %+v, client %+v", cc, sc, sp, cp)
			}
		}
	}
}

func TestParamsDirections(t *testing.T) {
	p := Params{ServerNoContextTakeover: true, ServerMaxWindowBits: 9, ClientMaxWindowBits: 12}
	if bits, nct := p.Outgoing(true); bits != 9 || !nct {
		t.Errorf("server outgoing %d %v", bits, nct)
	}
	if bits, nct := p.Incoming(false); bits != 9 || !nct {
		t.Errorf("client incoming %d %v", bits, nct)
	}
	if bits, nct := p.Outgoing(false); bits != 12 || nct {
		t.Errorf("client outgoing %d %v", bits, nct)
	}
	if bits, nct := p.Incoming(true); bits != 12 || nct {
		t.Errorf("server incoming %d %v", bits, nct)
	}
}

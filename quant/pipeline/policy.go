package pipeline

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/kvant-dev/kvant/format"
	"github.com/kvant-dev/kvant/model"
	"github.com/kvant-dev/kvant/quant"
)

// Types are the tensor types a policy can choose.
var Types = []format.DType{quant.Q8, quant.Q4, quant.Q4A, format.F16, format.BF16, format.F32}

// ParseType checks a type name given on the command line.
func ParseType(s string) (format.DType, error) {
	for _, t := range Types {
		if string(t) == s {
			return t, nil
		}
	}
	return "", fmt.Errorf("%w: type %q (want q8, q4, q4a, f16, bf16 or f32)", ErrUsage, s)
}

// A Rule assigns a type to the tensors whose canonical name matches
// Pattern (a Go regular expression, unanchored as in llama.cpp's
// --tensor-type).
type Rule struct {
	Pattern string       `json:"pattern"`
	Type    format.DType `json:"type"`
	// Why says where a default rule comes from; empty for user rules.
	Why string `json:"why,omitempty"`
	re  *regexp.Regexp
}

// ParseRule parses "REGEX=TYPE". The last '=' separates them, so the
// pattern may contain '='.
func ParseRule(s string) (Rule, error) {
	i := strings.LastIndex(s, "=")
	if i <= 0 {
		return Rule{}, fmt.Errorf("%w: tensor type rule %q is not REGEX=TYPE", ErrUsage, s)
	}
	t, err := ParseType(s[i+1:])
	if err != nil {
		return Rule{}, fmt.Errorf("tensor type rule %q: %w", s, err)
	}
	return newRule(s[:i], t, "")
}

func newRule(pattern string, t format.DType, why string) (Rule, error) {
	re, err := regexp.Compile(pattern)
	if err != nil {
		return Rule{}, fmt.Errorf("%w: tensor type rule %q: %v", ErrUsage, pattern, err)
	}
	return Rule{Pattern: pattern, Type: t, Why: why, re: re}, nil
}

// DefaultRules returns the rules kvant applies after the user's for a base
// type, modelled on llama.cpp's choices for its Q4_K_M mix
// (llama_tensor_get_type): with 4-bit weights, the token embedding and the
// output head (the embedding too when they are tied), and attn_v and
// ffn_down in the layers where quantization error hurts most (the first and
// last eighth, and every third one between), get 8 bits. llama.cpp gives
// them Q6_K; q8 is kvant's nearest type. With q8, f16 or bf16 as base there
// are no exceptions.
func DefaultRules(c model.Config, base format.DType) []Rule {
	if base != quant.Q4 && base != quant.Q4A {
		return nil
	}
	must := func(p string, why string) Rule {
		r, err := newRule(p, quant.Q8, why)
		if err != nil {
			panic(err)
		}
		return r
	}
	rules := []Rule{must(`^(token_embd|output)\.weight$`, "embedding and output head: 8 bits, as llama.cpp's mixes give them more bits")}
	var more []string
	for l := 0; l < c.Layers; l++ {
		if useMoreBits(l, c.Layers) {
			more = append(more, strconv.Itoa(l))
		}
	}
	if len(more) > 0 {
		rules = append(rules, must(`^blk\.(`+strings.Join(more, "|")+`)\.(attn_v|ffn_down)\.weight$`,
			"attn_v and ffn_down of the first and last eighth of the layers and every third between: 8 bits (llama.cpp Q4_K_M's use_more_bits)"))
	}
	return rules
}

// useMoreBits is llama.cpp's use_more_bits(i_layer, n_layers).
func useMoreBits(l, n int) bool {
	return l < n/8 || l >= 7*n/8 || (l-n/8)%3 == 2
}

// Policy decides each tensor's type.
type Policy struct {
	Base  format.DType
	Rules []Rule // user rules first, then defaults; the first match wins
}

// NewPolicy builds the policy for a base type, the user's rules and the
// model's config.
func NewPolicy(base format.DType, user []Rule, c model.Config) Policy {
	return Policy{Base: base, Rules: append(append([]Rule(nil), user...), DefaultRules(c, base)...)}
}

// Target returns the type for a tensor and the reason. Tensors that are
// not floating point are copied as they are; 1-D float tensors (norm
// weights, biases) stay f32, as in every mature quantizer: they are tiny and
// the forward pass uses them in f32. Rules apply to the rest.
func (p Policy) Target(info format.TensorInfo) (format.DType, string) {
	if !info.DType.IsFloat() {
		return info.DType, "not floating point: copied"
	}
	if len(info.Shape) <= 1 {
		return format.F32, "1-D: f32"
	}
	for _, r := range p.Rules {
		if r.re == nil {
			r.re = regexp.MustCompile(r.Pattern)
		}
		if r.re.MatchString(info.Name) {
			if r.Why != "" {
				return r.Type, "default rule: " + r.Why
			}
			return r.Type, "rule " + r.Pattern + "=" + string(r.Type)
		}
	}
	return p.Base, "base type"
}

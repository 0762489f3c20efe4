#!/usr/bin/env bash
# The results of docs/validation.md: the perplexity table and the tables of
# quantized models against their fp32 base, printed as the page's markdown.
# It builds, quantizes tiny-llama and stories260K to q8 and q4 at groups 32
# and 128 (default method and policy), runs kvant-infer perplexity and compare
# with --json, and formats the results with bench/validationtables. It also
# rewrites docs/report-tiny-llama-q4-g32.html.
#
# stories260K and its text come from ../shared; without it those rows are
# skipped with a message. Work files go to WORKDIR (default out/validation).
# About 3 to 4 minutes on 2 cores, most of it the stories260K perplexity run.
# Usage: bench/validation.sh [WORKDIR]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-out/validation}
mkdir -p "$out"
make -s build >/dev/null
go build -o "$out/validationtables" ./bench/validationtables
tables=$out/validationtables

shared=../shared
s260=$shared/models/stories260K
stories=$shared/text/tinystories-valid-head/tinystories_valid_head.txt
kjv=testdata/tiny-llama/heldout_kjv.txt
have_shared=1
if [ ! -f "$s260/stories260K.bin" ] || [ ! -f "$s260/tok512.model" ] || [ ! -f "$stories" ]; then
	have_shared=0
	echo "validation.sh: $shared (stories260K, tinystories_valid_head.txt) not found: skipping the stories260K rows" >&2
fi

log() { echo "== $*" >&2; }

# perplexity NAME ARGS...: kvant-infer perplexity --json into $out/ppl-NAME.json.
perplexity() {
	local name=$1; shift
	log "perplexity $name"
	bin/kvant-infer perplexity "$@" --json >"$out/ppl-$name.json" 2>"$out/ppl-$name.log"
}

# quantize SRC PREFIX [ARGS...]: PREFIX-{q8,q4}-g{32,128}.kvant.
quantize() {
	local src=$1 prefix=$2; shift 2
	for t in q8 q4; do
		for g in 32 128; do
			log "quantize $prefix-$t-g$g"
			bin/kvant-quantize -q "$src" -o "$out/$prefix-$t-g$g.kvant" --type "$t" --group "$g" "$@" \
				>"$out/$prefix-$t-g$g.quantize.txt"
		done
	done
}

# compare PREFIX BASE TEXT [ARGS...]: the first model (q8-g32) against the base,
# saving the base's side in f32 (exact); the other three from that file.
compare() {
	local prefix=$1 base=$2 text=$3; shift 3
	local m rc
	local -a src extra
	for m in q8-g32 q8-g128 q4-g32 q4-g128; do
		log "compare $prefix-$m"
		if [ "$m" = q8-g32 ]; then
			src=(--base "$base" --save-base "$out/$prefix-base.kvb" --save-format f32)
		else
			src=(--base-logits "$out/$prefix-base.kvb")
		fi
		extra=()
		if [ "$prefix-$m" = tiny-llama-q4-g32 ]; then
			extra=(--max-kld 0.01 --min-top1 90 --report docs/report-tiny-llama-q4-g32.html)
		fi
		rc=0
		bin/kvant-infer compare "${src[@]}" -m "$out/$prefix-$m.kvant" -f "$text" --prompts 16 "$@" \
			"${extra[@]}" --json >"$out/compare-$prefix-$m.json" 2>"$out/compare-$prefix-$m.log" || rc=$?
		if [ "$rc" = 3 ]; then
			echo "validation.sh: $prefix-$m failed the verdict (--max-kld 0.01 --min-top1 90)" >&2
		elif [ "$rc" != 0 ]; then
			cat "$out/compare-$prefix-$m.log" >&2
			exit "$rc"
		fi
	done
}

ppl_rows=()
if [ "$have_shared" = 1 ]; then
	perplexity stories260K -m "$s260/stories260K.bin" --tokenizer "$s260/tok512.model" -f "$stories" --ctx 512
	ppl_rows+=("stories260K (fp32, \`stories260K.bin\` + \`tok512.model\`)" "../shared/text/tinystories-valid-head/tinystories_valid_head.txt"
		"$out/ppl-stories260K.json" -)
fi
perplexity tiny-llama -m testdata/tiny-llama/pt-zip -f "$kjv" --ctx 128
perplexity tiny-llama-stride -m testdata/tiny-llama/pt-zip -f "$kjv" --ctx 128 --stride 64
perplexity tiny-qwen2 -m testdata/tiny-qwen2/pt-zip -f "$kjv" --ctx 128
ppl_rows+=(
	"tiny-llama (project model, fp32 \`pt-zip\`)" "$kjv" "$out/ppl-tiny-llama.json" testdata/tiny-llama/perplexity_reference.json
	"tiny-llama" "$kjv" "$out/ppl-tiny-llama-stride.json" testdata/tiny-llama/perplexity_reference.json
	"tiny-qwen2 (project model, fp32 \`pt-zip\`)" "$kjv" "$out/ppl-tiny-qwen2.json" testdata/tiny-qwen2/perplexity_reference.json
)

quantize testdata/tiny-llama/pt-zip tiny-llama
compare tiny-llama testdata/tiny-llama/pt-zip "$kjv" --ctx 128
if [ "$have_shared" = 1 ]; then
	quantize "$s260/stories260K.bin" stories260K --tokenizer "$s260/tok512.model"
	compare stories260K "$s260/stories260K.bin" "$stories" --tokenizer "$s260/tok512.model" --ctx 512 --max-windows 100
fi

commit=$(git rev-parse --short HEAD)
dirty=""
if ! git diff --quiet HEAD -- . ':!docs' 2>/dev/null; then
	dirty=" (plus uncommitted changes in the tree)"
fi
echo "Produced by \`bench/validation.sh\` at commit \`$commit\`$dirty on $(date -u +%Y-%m-%d), on a machine with"
echo "$(nproc) CPUs shared with other jobs, so times are indicative only."
echo
echo "### Perplexity"
echo
"$tables" ppl "${ppl_rows[@]}"
echo
echo "### Quantized models against their fp32 base"
echo
rows() { local m; for m in q8-g32 q8-g128 q4-g32 q4-g128; do echo "$m=$out/compare-$1-$m.json"; done; }
"$tables" compare -title "**tiny-llama** (project model, fp32 \`pt-zip\`" -text "$kjv" $(rows tiny-llama)
if [ "$have_shared" = 1 ]; then
	echo
	"$tables" compare -title "**stories260K** (\`stories260K.bin\` + \`tok512.model\`" -text tinystories_valid_head.txt $(rows stories260K)
fi

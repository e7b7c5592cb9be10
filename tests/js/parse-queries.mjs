// Parses queries with the grammars Grafana's query editors use and reports every syntax error.
//
// Usage: node parse-queries.mjs < queries.json
//   input:  [{"id": "...", "lang": "logql" | "promql", "expr": "..."}]
//   output: [{"id": "...", "ok": true} | {"id": "...", "ok": false, "errors": [{"from": n, "to": n, "near": "..."}]}]
// lezer parsers never throw on bad input: they recover and mark the broken spots with error nodes (⚠),
// so the check walks the whole tree and collects them.
import { parser as logqlParser } from "@grafana/lezer-logql";
import { parser as promqlParser } from "@prometheus-io/lezer-promql";

const parsers = { logql: logqlParser, promql: promqlParser };

function errorsOf(parser, expr) {
  const errors = [];
  parser.parse(expr).iterate({
    enter(node) {
      if (node.type.isError) {
        errors.push({ from: node.from, to: node.to, near: expr.slice(Math.max(0, node.from - 20), node.to + 20) });
      }
    },
  });
  return errors;
}

let input = "";
process.stdin.setEncoding("utf8");
for await (const chunk of process.stdin) input += chunk;
const results = JSON.parse(input).map(({ id, lang, expr }) => {
  const parser = parsers[lang];
  if (!parser) return { id, ok: false, errors: [{ from: 0, to: 0, near: `unknown language ${lang}` }] };
  const errors = errorsOf(parser, expr);
  return errors.length ? { id, ok: false, errors } : { id, ok: true };
});
process.stdout.write(JSON.stringify(results));

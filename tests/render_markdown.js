// Renders markdown as the rasa-webchat widget does (react-markdown 4, escapeHtml on,
// transformLinkUri null): one JSON string per input line -> one JSON string of HTML.
const path = require("path");
const modules = path.join(__dirname, "..", "web", "node_modules");
const React = require(path.join(modules, "react"));
const { renderToStaticMarkup } = require(path.join(modules, "react-dom", "server"));
const ReactMarkdown = require(path.join(modules, "react-markdown"));
const readline = require("readline");

console.error = () => {}; // React's javascript: URL warning would go to stderr
readline.createInterface({ input: process.stdin }).on("line", (line) => {
  const source = JSON.parse(line);
  const element = React.createElement(ReactMarkdown, { source, escapeHtml: true, transformLinkUri: null });
  process.stdout.write(JSON.stringify(renderToStaticMarkup(element)) + "\n");
});

// The PromQL expression editor: CodeMirror 6 with Prometheus's PromQL
// language package (highlighting, completion against this server, linting).
import { EditorState, Prec } from '@codemirror/state';
import { EditorView, keymap, placeholder, drawSelection, highlightSpecialChars } from '@codemirror/view';
import { defaultKeymap, history, historyKeymap, insertNewlineAndIndent } from '@codemirror/commands';
import { bracketMatching, HighlightStyle, syntaxHighlighting } from '@codemirror/language';
import { autocompletion, closeBrackets, closeBracketsKeymap, completionKeymap, completionStatus } from '@codemirror/autocomplete';
import { lintKeymap } from '@codemirror/lint';
import { tags } from '@lezer/highlight';
import { PromQLExtension } from '@prometheus-io/codemirror-promql';
import { PREFIX } from './api';

const highlight = HighlightStyle.define([
  { tag: tags.keyword, color: '#0b57d0' },
  { tag: tags.function(tags.variableName), color: '#0b57d0' },
  { tag: tags.labelName, color: '#a3460a' },
  { tag: tags.operator, color: '#6f42c1' },
  { tag: tags.modifier, color: '#6f42c1' },
  { tag: tags.string, color: '#0a7d38' },
  { tag: tags.number, color: '#116b6b' },
  { tag: tags.comment, color: '#6b7280', fontStyle: 'italic' },
  { tag: tags.invalid, color: '#c5221f' },
]);

const theme = EditorView.theme({
  '&': { fontSize: '14px', background: '#fff' },
  '&.cm-focused': { outline: 'none' },
  '.cm-content': { fontFamily: 'var(--mono)', padding: '7px 0', caretColor: '#111' },
  '.cm-line': { padding: '0 8px' },
  '.cm-placeholder': { color: '#8a8f98' },
  '.cm-tooltip.cm-tooltip-autocomplete > ul': { fontFamily: 'var(--mono)', maxHeight: '16em' },
  '.cm-completionDetail': { color: '#6b7280', fontStyle: 'normal', marginLeft: '1em' },
  '.cm-completionInfo': { maxWidth: '28em', whiteSpace: 'pre-wrap' },
});

let promql: PromQLExtension | null = null;
function promqlExtension(): PromQLExtension {
  // One shared instance: its client caches metric names across panels.
  promql ??= new PromQLExtension().setComplete({
    remote: { url: location.origin + PREFIX, httpMethod: 'POST', cache: { maxAge: 60_000 } },
    maxMetricsMetadata: 10_000,
  });
  return promql;
}

export interface EditorHandle {
  view: EditorView;
  setValue(v: string): void;
}

export function createEditor(
  parent: HTMLElement,
  initial: string,
  onChange: (v: string) => void,
  onRun: () => void,
  label: string,
): EditorHandle {
  const run = () => {
    onRun();
    return true;
  };
  const state = EditorState.create({
    doc: initial,
    extensions: [
      highlightSpecialChars(),
      drawSelection(),
      history(),
      bracketMatching(),
      closeBrackets(),
      autocompletion({ activateOnTyping: true, icons: false }),
      syntaxHighlighting(highlight),
      promqlExtension().asExtension(),
      placeholder('Expression (press Enter to run, Shift+Enter for a new line)'),
      EditorView.lineWrapping,
      EditorView.contentAttributes.of({ 'aria-label': label, 'data-testid': 'expr-input' }),
      theme,
      // Enter runs unless the completion list is open (then it accepts);
      // Shift+Enter inserts a new line.
      Prec.highest(
        keymap.of([
          {
            key: 'Enter',
            run: (v) => (completionStatus(v.state) === 'active' ? false : run()),
          },
          { key: 'Shift-Enter', run: insertNewlineAndIndent },
          { key: 'Mod-Enter', run },
        ]),
      ),
      keymap.of([...closeBracketsKeymap, ...completionKeymap, ...historyKeymap, ...lintKeymap, ...defaultKeymap]),
      EditorView.updateListener.of((u) => {
        if (u.docChanged) onChange(u.state.doc.toString());
      }),
    ],
  });
  const view = new EditorView({ state, parent });
  return {
    view,
    setValue(v: string) {
      if (v !== view.state.doc.toString()) {
        view.dispatch({ changes: { from: 0, to: view.state.doc.length, insert: v } });
      }
    },
  };
}

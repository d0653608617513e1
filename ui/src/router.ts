// A tiny history router: routes are paths under the route prefix.
import { useEffect, useState } from 'preact/hooks';
import { PREFIX } from './api';

type Listener = () => void;
const listeners = new Set<Listener>();

/** The current route (path under the prefix, e.g. `/graph`) and query string. */
export function current(): { route: string; search: string } {
  let p = location.pathname;
  if (PREFIX && p.startsWith(PREFIX)) p = p.slice(PREFIX.length);
  return { route: p.replace(/\/+$/, '') || '/', search: location.search };
}

export function navigate(to: string, replace = false) {
  const url = PREFIX + to;
  if (replace) history.replaceState(null, '', url);
  else history.pushState(null, '', url);
  listeners.forEach((l) => l());
}

addEventListener('popstate', () => listeners.forEach((l) => l()));

export function useRoute() {
  const [loc, setLoc] = useState(current);
  useEffect(() => {
    const l = () => setLoc(current());
    listeners.add(l);
    return () => listeners.delete(l);
  }, []);
  return loc;
}

/** An in-app link: a real href (so it opens in a new tab), handled here on plain clicks. */
export function onLinkClick(e: MouseEvent, to: string) {
  if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  e.preventDefault();
  navigate(to);
}

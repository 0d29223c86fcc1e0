// The automatic context of every event: the library, the page, the browser.

export const LIBRARY = { name: '@tributary/web', version: '0.1.0' };

export function pageProperties(): Record<string, unknown> {
  return {
    url: location.href,
    path: location.pathname,
    search: location.search,
    referrer: document.referrer,
    title: document.title,
  };
}

export function autoContext(): Record<string, unknown> {
  let timezone: string | undefined;
  try {
    timezone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  } catch {
    timezone = undefined;
  }
  return {
    library: LIBRARY,
    page: pageProperties(),
    userAgent: navigator.userAgent,
    locale: navigator.language,
    timezone,
    screen: typeof screen === 'undefined' ? undefined : {
      width: screen.width,
      height: screen.height,
      density: devicePixelRatio,
    },
  };
}

"""The website as readers meet it: every page of _toc.yml in a real browser.

Debian's Chromium, headless, driven by Playwright for Python (which never downloads a browser of
its own here: it is always given ``executable_path``). The site is built once per session (the
``built_site`` fixture in conftest.py) and served from 127.0.0.1; the browser aborts every
request to any other host and the tests count each one as a failure, so a green run proves that
the pages work with no internet access: MathJax, require.js, the widget manager and the quiz
scripts all come from the site itself (book/_static/vendor/README.md).

What is checked, page by page (the pages are read from _toc.yml, so new chapters are covered
as soon as they are listed):

- the page loads with no console error, no uncaught exception, no failed or blocked request;
- math is typeset (MathJax output in every math element, no raw ``$...$`` or ``\\(...\\)``
  left in the text, no TeX error);
- every image loads and has a text alternative;
- every widget shows its stored state, not a placeholder;
- every internal link resolves, anchors included;
- every self-check question gives feedback for every answer;
- on chapter pages, the Binder and Colab buttons open that chapter's notebook in the repository
  and branch of _config.yml;
- the search page finds "momentum";
- the built HTML shows no Python warning, traceback or object repr in any output;
- every slider (course_lib.page.slider), moved by keyboard and mouse, shows that stop's
  picture, alt text and readout; no ipywidgets slider is left (it would redraw nothing);
- in every chapter the right answers of the self-checks sit at varying positions, are not
  given away by their length, and no question or feedback shows a raw Markdown backtick;
- at 1280 px no display equation, table or code/output block is wider than the column and
  nothing reaches past it; on a 390 px phone the page never scrolls sideways and nothing
  reaches past the screen outside a box of its own that scrolls;
- on a 390 px phone every display equation fits the column, every table or output that
  scrolls sideways says so (book/_static/course.js), and every picture shown much smaller than
  drawn offers its full size, in a dialog that works with the keyboard;
- an accessibility audit (axe-core, WCAG 2.1 A and AA rules, pinned by axe-playwright-python)
  finds no critical or serious violation on any page; the self-checks and the full-size
  dialog work with the keyboard alone, and announce their feedback;
- in dark mode (the theme's; the reader's system setting) figures keep a white card, code
  and self-checks stay readable; screenshots of every chapter are saved for a person.

Screenshots for a person to look at are saved in _build/screenshots/: every chapter whole at
1280 px, at 390 px (``__390px``) and in dark mode (``__dark``), the other pages as a reader
first sees them, and every slider after it was moved.

Chromium: $CHROMIUM_PATH, else /usr/bin/chromium. If it is missing the tests fail (never skip)
and say how to install it; `make test` installs it itself when run as root (CI).
"""

from __future__ import annotations

import functools
import http.server
import json
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import yaml
from axe_playwright_python.base import AXE_SCRIPT
from bs4 import BeautifulSoup
from playwright.sync_api import TimeoutError as PlaywrightTimeout

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOTS = ROOT / "_build" / "screenshots"
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())

PAGE_TIMEOUT_MS = 30_000
WIDGET_TIMEOUT_MS = 15_000
PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 1,
         "is_mobile": True, "has_touch": True}


def toc_entries() -> list[str]:
    """Every file that _toc.yml lists, in reading order (root, parts, chapters, sections)."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())

    def walk(items: list[dict]) -> list[str]:
        found = []
        for item in items:
            if "file" in item:
                found.append(str(item["file"]).removesuffix(".md").removesuffix(".ipynb"))
            found += walk(item.get("sections", []))
        return found

    entries = [str(toc["root"])]
    for part in toc.get("parts", []):
        entries += walk(part.get("chapters", []))
    entries += walk(toc.get("chapters", []))
    return entries


PAGES = toc_entries()
CHAPTERS = [entry for entry in PAGES if (ROOT / f"{entry}.ipynb").exists()]


# --------------------------------------------------------------------------------------------
# The server (the browser, Chromium under Playwright, is conftest.py's `browser` fixture)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass


@pytest.fixture(scope="session")
def site_url(built_site) -> str:
    """The built site, served on 127.0.0.1 at a free port by a threaded HTTP server."""
    handler = functools.partial(_QuietHandler, directory=str(built_site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/"
    server.shutdown()
    server.server_close()


@dataclass
class Session:
    """One fresh browser context that records everything a reader's console would show."""

    page: object
    context: object
    blocked: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def problems(self) -> list[str]:
        return (
            [f"request to another host (the site must work offline): {u}" for u in self.blocked]
            + [f"failed request: {u}" for u in self.failed]
            + [f"console error: {e}" for e in self.errors]
        )


@pytest.fixture(scope="session")
def open_page(browser, site_url, offline_route):
    """open_page(path) -> Session: load a page of the site in a fresh, offline context."""
    origin = site_url.rstrip("/")
    opened: list[Session] = []

    def open_(path: str, phone: bool = False, dark: bool = False) -> Session:
        # A laptop, or a 390 px phone (is_mobile: the page's viewport meta tag applies); in
        # light or dark mode (the theme follows the system's setting).
        scheme = "dark" if dark else "light"
        context = (browser.new_context(**PHONE, color_scheme=scheme) if phone
                   else browser.new_context(viewport={"width": 1280, "height": 900},
                                            color_scheme=scheme))
        context.set_default_timeout(PAGE_TIMEOUT_MS)
        page = context.new_page()
        session = Session(page=page, context=context)

        context.route("**/*", offline_route(origin, session.blocked))
        page.on("console", lambda m: m.type == "error" and session.errors.append(
            f"{m.text} ({m.location.get('url', '')})"))
        page.on("pageerror", lambda exc: session.errors.append(f"uncaught {exc}"))
        page.on("requestfailed", lambda r: r.url.startswith(origin) and session.failed.append(
            f"{r.url} ({r.failure})"))
        page.on("response", lambda r: r.status >= 400 and session.failed.append(
            f"{r.url} (HTTP {r.status})"))
        response = page.goto(site_url + path, wait_until="load")
        assert response is not None and response.ok, f"{path}: HTTP {response and response.status}"
        opened.append(session)
        return session

    yield open_
    for session in opened:
        session.context.close()


def settle(page) -> None:
    """Wait until MathJax has typeset the page and every stored widget has been drawn."""
    page.evaluate(
        """() => window.MathJax && MathJax.startup && MathJax.startup.promise
                 ? MathJax.startup.promise.then(() => true) : true"""
    )
    try:
        page.wait_for_function(
            """() => [...document.querySelectorAll(
                       'script[type="application/vnd.jupyter.widget-view+json"]')]
                     .every(tag => tag.previousElementSibling
                            && tag.previousElementSibling.classList.contains('widget-subarea')
                            && tag.previousElementSibling.childElementCount > 0)""",
            polling=100,
            timeout=WIDGET_TIMEOUT_MS,
        )
    except PlaywrightTimeout:
        pass  # test_widgets_show_their_stored_state names the widgets that were not drawn
    # jupyterquiz typesets its questions 500 ms after drawing them.
    page.wait_for_timeout(700)


# --------------------------------------------------------------------------------------------
# One visit per page: load, settle, screenshot, and read off what the checks need


FACTS_JS = r"""() => {
  const skip = new Set(['PRE', 'CODE', 'SCRIPT', 'STYLE', 'TEXTAREA', 'MJX-CONTAINER',
                        'MJX-ASSISTIVE-MML', 'NOSCRIPT']);
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT, {
    acceptNode(node) {
      for (let e = node.parentElement; e; e = e.parentElement) {
        if (skip.has(e.tagName)) return NodeFilter.FILTER_REJECT;
      }
      return NodeFilter.FILTER_ACCEPT;
    }});
  let text = '';
  while (walker.nextNode()) text += walker.currentNode.nodeValue + '\u0000';
  const rawMath = /\$\$[^\u0000]+?\$\$|\$[^$\u0000\n]+?\$|\\\([^\u0000]+?\\\)|\\\[[^\u0000]+?\\\]/g;
  const mathElements = [...document.querySelectorAll('.math')];
  const viewTags = [...document.querySelectorAll(
      'script[type="application/vnd.jupyter.widget-view+json"]')];
  // A TeX command left in the text: math that the Markdown split (a line starting with "+"
  // or "-" inside $...$ becomes a list item) or that MathJax never saw.
  const rawTex = /\\(?:frac|sqrt|gamma|beta|mu|sigma|varepsilon|sum|tilde|hat|mathrm|text|cdot|alpha|lambda|kappa|left|right|partial)(?![a-zA-Z])/g;
  return {
    rawMath: (text.match(rawMath) || []).concat(
      [...text.matchAll(rawTex)].map(m => text.slice(Math.max(0, m.index - 30), m.index + 30)
                                               .replace(/\u0000/g, ' '))).slice(0, 5),
    mathElements: mathElements.length,
    untypeset: mathElements.filter(e => !e.querySelector('mjx-container'))
                            .map(e => e.textContent.slice(0, 80)).slice(0, 5),
    mathErrors: [...document.querySelectorAll('mjx-merror')]
                  .map(e => e.getAttribute('data-mjx-error') || e.textContent).slice(0, 5),
    images: [...document.images].map(img => ({
      src: img.currentSrc.slice(0, 120), alt: (img.getAttribute('alt') || '').trim(),
      title: (img.getAttribute('title') || '').trim(),
      label: (img.getAttribute('aria-label') || '').trim(),
      loaded: img.complete && img.naturalWidth > 0,
      widget: !!img.closest('.widget-subarea')})),
    widgets: viewTags.length,
    widgetsDrawn: viewTags.filter(tag => {
      const view = tag.previousElementSibling;
      return view && view.classList.contains('widget-subarea') && view.offsetHeight > 0;
    }).length,
    placeholders: [...document.querySelectorAll('img.jupyter-widget')].length
                  + (document.body.innerText.match(/Loading widget/gi) || []).length,
    links: [...document.querySelectorAll('a[href]')].map(a => a.href),
    launchLinks: [...document.querySelectorAll('.dropdown-launch-buttons a[href]')]
                   .map(a => a.href),
    quizzes: document.querySelectorAll('.Quiz').length,
    // Per question, in the order the reader sees the options: which ones are right.
    quizRight: [...document.querySelectorAll('.Quiz')].map(quiz => ({
      question: quiz.innerText.replace(/\s+/g, ' ').slice(0, 70),
      many: !!quiz.querySelector('.ManyChoiceQn'),
      right: [...quiz.querySelectorAll('.MCButton')]
               .map(b => b.getAttribute('data-correct') === 'true')})),
    quizBackticks: [...document.querySelectorAll('.Quiz')].map(q => q.innerText)
                     .filter(t => t.includes('`')).map(t => t.replace(/\s+/g, ' ').slice(0, 90)),
    sliders: document.querySelectorAll('.course-slider').length,
    widgetSliders: document.querySelectorAll('.widget-slider, .jupyter-widget-slider').length,
  };
}"""

# What does not fit: display math, tables and code/output blocks wider than the article's
# column (each scrolls inside its own box, which the reader may not notice), and anything on the
# page reaching past the column or the window without such a box (clipped, or the whole page
# scrolls sideways).
LAYOUT_JS = r"""phone => {
  const article = document.querySelector('article.bd-article');
  const cs = getComputedStyle(article);
  const box = article.getBoundingClientRect();
  // On a laptop nothing may reach past the column (into the sidebar); on a phone nothing past
  // the screen's edge.
  const right = (phone ? window.innerWidth
                       : Math.min(window.innerWidth, box.right - parseFloat(cs.paddingRight))) + 1;
  const column = box.width - parseFloat(cs.paddingLeft) - parseFloat(cs.paddingRight);
  const text = e => (e.innerText || e.textContent).replace(/\s+/g, ' ').trim().slice(0, 80);
  const wideMath = [...article.querySelectorAll('mjx-container[display="true"]')]
    .filter(c => c.getBoundingClientRect().height > 0)
    .filter(c => c.scrollWidth > c.clientWidth + 1 || c.getBoundingClientRect().width > column + 1)
    .map(c => `${Math.round(c.scrollWidth)} px: ${text(c)}`);
  const wideTables = [...article.querySelectorAll('table')]
    .filter(t => t.getBoundingClientRect().height > 0
                 && t.getBoundingClientRect().width > column + 1)
    .map(t => `${Math.round(t.getBoundingClientRect().width)} px: ${text(t)}`);
  const scrollingBlocks = [...article.querySelectorAll(
      '.cell_input pre, .cell_output pre, .cell_output .output')]
    .filter(e => e.getBoundingClientRect().height > 0 && e.scrollWidth > e.clientWidth + 1)
    .map(e => {
      if (!(e.innerText || '').trim()) return `<${e.tagName.toLowerCase()} class="${e.className}">`
                                            + ` ${e.scrollWidth} px wide in ${e.clientWidth} px`;
      const lines = (e.innerText || '').split('\n');
      const longest = lines.reduce((a, b) => (b.length > a.length ? b : a), '');
      return `${e.closest('.cell_input') ? 'code' : 'output'} line of ${longest.length} `
             + `characters: ${longest.trim().slice(0, 70)}`;
    });
  const scrolls = e => {
    for (let p = e.parentElement; p && p !== article.parentElement; p = p.parentElement) {
      const o = getComputedStyle(p).overflowX;
      if ((o === 'auto' || o === 'scroll') && p.getBoundingClientRect().right <= right) return true;
    }
    return false;
  };
  // MathJax's assistive MathML is visually hidden (clipped to nothing) on purpose.
  const clipped = [...article.querySelectorAll('*')]
    .filter(e => !e.closest('mjx-assistive-mml'))
    .filter(e => { const r = e.getBoundingClientRect();
                   return r.width > 0 && r.height > 0 && r.right > right && !scrolls(e); })
    .filter((e, _, all) => !all.includes(e.parentElement))
    .map(e => `<${e.tagName.toLowerCase()} class="${e.className}"> reaches `
              + `${Math.round(e.getBoundingClientRect().right)} px: ${text(e).slice(0, 60)}`);
  return {column: Math.round(column), wideMath, wideTables, scrollingBlocks, clipped,
          pageOverflow: document.scrollingElement.scrollWidth - window.innerWidth};
}"""


# Answers every multiple-choice option of every jupyterquiz question on the page, the way a
# reader does (a click on the option), and reads the feedback each answer shows.
ANSWER_CHOICES_JS = r"""() => [...document.querySelectorAll('.Quiz')].map(quiz => ({
  question: quiz.innerText.replace(/\s+/g, ' ').slice(0, 70),
  answers: [...quiz.querySelectorAll('.MCButton')].map(button => {
    button.click();
    const feedback = quiz.querySelector('.Feedback');
    return {expected: button.getAttribute('data-feedback') || '',
            shown: feedback ? feedback.innerText.replace(/\s+/g, ' ').trim() : ''};
  }),
}))"""


# WCAG 2.1 A and AA, plus the rule that a control's name contains its visible text (WCAG
# 2.5.3; axe files it under "experimental", so it must be switched on by name).
AXE_OPTIONS = {
    "runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]},
    "rules": {"label-content-name-mismatch": {"enabled": True}},
    "resultTypes": ["violations"],
}


def audit(page) -> list[str]:
    """axe-core's critical and serious violations on the page, one line per element."""
    page.evaluate(AXE_SCRIPT)
    results = page.evaluate("options => axe.run(document, options)", AXE_OPTIONS)
    return [f"{v['id']} ({v['impact']}): {' '.join(node['target'][0:1])}: "
            f"{' '.join(node['html'].split())[:120]} -- {v['help']}"
            for v in results["violations"] if v["impact"] in ("critical", "serious")
            for node in v["nodes"]]


# On a phone, what a reader could miss: display equations that still do not fit after
# course.js has set them smaller, boxes that scroll sideways with no visible hint, and
# pictures shown much smaller than drawn that offer no full size.
READING_JS = r"""() => {
  const article = document.querySelector('article.bd-article');
  const text = e => (e.innerText || e.textContent).replace(/\s+/g, ' ').trim().slice(0, 70);
  const shown = e => e.getBoundingClientRect().height > 0;
  const overflows = e => e.scrollWidth > e.clientWidth + 1;
  const hinted = box => {
    const place = box.matches('mjx-container') && box.closest('div.math') || box;
    const hint = place.previousElementSibling;
    return !!hint && hint.classList.contains('course-scroll-hint') && !hint.hidden
           && hint.getBoundingClientRect().height > 0;
  };
  const equations = [...article.querySelectorAll('mjx-container[jax="CHTML"][display="true"]')]
    .filter(shown);
  const boxes = [...article.querySelectorAll(
      'div.pst-scrollable-table-container, div.cell_output .output, div.cell_output pre, '
      + 'div.math')].filter(shown);
  return {
    equations: equations.length,
    wideEquations: equations.filter(overflows)
      .map(e => `${e.scrollWidth} px in ${e.clientWidth} px: ${text(e)}`),
    uncued: boxes.filter(overflows).filter(b => !b.querySelector('.course-scroll-hint'))
      .filter(b => !hinted(b)).map(b => `${b.className}, ${b.scrollWidth} px in `
                                       + `${b.clientWidth} px: ${text(b)}`),
    tinyPictures: [...article.querySelectorAll('img')].filter(shown)
      .filter(img => img.naturalWidth > 1.25 * img.getBoundingClientRect().width)
      .filter(img => { const b = img.nextElementSibling;
                       return !(b && b.classList.contains('course-full-size') && !b.hidden); })
      .map(img => `${img.naturalWidth} px shown at ${Math.round(img.getBoundingClientRect().width)}`
                  + ` px: ${(img.alt || '').slice(0, 60)}`),
  };
}"""


@dataclass
class Visit:
    problems: list[str]  # while loading
    facts: dict
    layout: dict = field(default_factory=dict)
    quiz: list[str] = field(default_factory=list)  # questions that gave no feedback
    quiz_feedback: list[str] = field(default_factory=list)  # every feedback text shown
    quiz_problems: list[str] = field(default_factory=list)  # console errors while answering
    accessibility: list[str] = field(default_factory=list)  # critical or serious violations
    reading: dict = field(default_factory=dict)  # on a phone: what hides without a cue


def answer_self_checks(page, feedback: list[str] | None = None) -> list[str]:
    """Answer every self-check question on the page; return those that gave no feedback.

    Every feedback text shown is appended to ``feedback``.
    """
    silent = []
    for quiz in page.evaluate(ANSWER_CHOICES_JS):
        for number, answer in enumerate(quiz["answers"], start=1):
            if feedback is not None:
                feedback.append(answer["shown"])
            # The feedback's first words, up to its first math (which MathJax rewrites), as
            # text (the stored feedback is HTML: <code> spans).
            text = BeautifulSoup(answer["expected"], "html.parser").get_text()
            expected = " ".join(text.split("$")[0].split()[:6])
            if not answer["shown"] or not answer["shown"].startswith(expected):
                silent.append(f"{quiz['question']!r}, answer {number}: feedback "
                              f"{answer['shown'][:60]!r}, expected {expected!r}...")
    quizzes = page.locator(".Quiz")
    for q in range(quizzes.count()):
        quiz = quizzes.nth(q)
        inputs = quiz.locator("input.Input-text")
        for i in range(inputs.count()):
            box = inputs.nth(i)
            answers = json.loads(box.get_attribute("data-answers") or "[]")
            values = [a["value"] for a in answers if a.get("type") == "value"]
            values += [a["range"][0] for a in answers if a.get("type") == "range"]
            for value in (values[:1] or [0]) + [987654321]:
                box.fill(str(value))
                box.press("Enter")
                if not " ".join(quiz.locator(".Feedback").inner_text().split()):
                    question = " ".join(quiz.inner_text().split())[:70]
                    silent.append(f"{question!r}: no feedback for the answer {value}")
    return silent


@pytest.fixture(scope="session")
def visit(open_page):
    """visit(entry) -> Visit: each page is loaded, checked and answered once per session."""

    @functools.cache
    def visit_(entry: str) -> Visit:
        session = open_page(f"{entry}.html")
        page = session.page
        settle(page)
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        # Every chapter whole; the other pages as a reader first sees them.
        page.screenshot(path=str(SCREENSHOTS / f"{entry.replace('/', '__')}.png"),
                        full_page=entry in CHAPTERS)
        result = Visit(problems=session.problems(), facts=page.evaluate(FACTS_JS),
                       layout=page.evaluate(LAYOUT_JS, False))
        # The audit runs once per page, on this load, before any answer changes the quizzes.
        result.accessibility = audit(page)
        if result.facts["quizzes"]:
            before = len(session.problems())
            result.quiz = answer_self_checks(page, result.quiz_feedback)
            result.quiz_problems = session.problems()[before:]
        session.context.close()
        return result

    return visit_


@pytest.fixture(scope="session")
def visit_phone(open_page):
    """visit_phone(entry) -> Visit: the page on a 390 px phone (layout facts and a screenshot)."""

    @functools.cache
    def visit_(entry: str) -> Visit:
        session = open_page(f"{entry}.html", phone=True)
        page = session.page
        settle(page)
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"{entry.replace('/', '__')}__390px.png"),
                        full_page=entry in CHAPTERS)
        result = Visit(problems=session.problems(), facts={},
                       layout=page.evaluate(LAYOUT_JS, True), reading=page.evaluate(READING_JS))
        session.context.close()
        return result

    return visit_


# --------------------------------------------------------------------------------------------
# Item 1: the static site


def test_toc_lists_pages_and_chapters():
    assert PAGES, "no pages read from _toc.yml"
    assert CHAPTERS, "no chapter notebooks among the pages of _toc.yml"


@pytest.mark.parametrize("entry", PAGES)
def test_page_loads_offline_without_errors(visit, entry):
    problems = visit(entry).problems
    assert not problems, f"{entry}.html:\n  " + "\n  ".join(problems)


@pytest.mark.parametrize("entry", PAGES)
def test_math_is_typeset(visit, entry):
    facts = visit(entry).facts
    assert not facts["untypeset"], f"{entry}.html: math left untypeset: {facts['untypeset']}"
    assert not facts["rawMath"], f"{entry}.html: raw TeX in the text: {facts['rawMath']}"
    assert not facts["mathErrors"], f"{entry}.html: TeX errors: {facts['mathErrors']}"


@pytest.mark.parametrize("entry", PAGES)
def test_images_load_and_have_a_text_alternative(visit, entry):
    images = visit(entry).facts["images"]
    broken = [img["src"] for img in images if not img["loaded"]]
    assert not broken, f"{entry}.html: images that did not load: {broken}"
    unnamed = [
        ("an ipywidgets Image" if img["widget"] else img["src"])
        for img in images if not (img["alt"] or img["label"])
    ]
    assert not unnamed, (
        f"{entry}.html: images without alt text: {unnamed}. A figure gets it from the cell's "
        "mystnb.image.alt metadata. ipywidgets' Image has no alt (and its `tooltip` breaks the "
        "static page's widget manager): draw a changing picture into a widgets.HTML as "
        "<img src='data:image/png;base64,...' alt='...'> instead."
    )


@pytest.mark.parametrize("entry", PAGES)
def test_widgets_show_their_stored_state(visit, entry):
    facts = visit(entry).facts
    assert facts["widgetsDrawn"] == facts["widgets"], (
        f"{entry}.html: only {facts['widgetsDrawn']} of {facts['widgets']} widgets were drawn "
        "from their stored state"
    )
    assert facts["placeholders"] == 0, f"{entry}.html shows a 'loading widget' placeholder"


@functools.cache
def _ids(path: Path) -> frozenset[str]:
    return frozenset(re.findall(r'\bid="([^"]+)"', path.read_text(errors="replace")))


@pytest.mark.parametrize("entry", PAGES)
def test_internal_links_resolve(visit, built_site, site_url, entry):
    origin = urlsplit(site_url)
    dead = []
    for href in sorted(set(visit(entry).facts["links"])):
        url = urlsplit(href)
        if url.scheme not in ("http", "https") or url.netloc != origin.netloc:
            continue
        path = unquote(url.path).lstrip("/")
        target = built_site / path
        if path == "" or path.endswith("/"):
            target = target / "index.html"
        if not target.is_file():
            dead.append(f"{href} (no file {path})")
        elif (url.fragment and target.suffix == ".html"
              and unquote(url.fragment) not in _ids(target)):
            dead.append(f"{href} (no id {url.fragment!r} in {path})")
    assert not dead, f"{entry}.html has internal links that lead nowhere:\n  " + "\n  ".join(dead)


@pytest.mark.parametrize("entry", PAGES)
def test_every_self_check_question_gives_feedback(visit, entry):
    result = visit(entry)
    assert not result.quiz, f"{entry}.html: answers without feedback:\n  " + "\n  ".join(
        result.quiz)
    assert not result.quiz_problems, f"{entry}.html while answering:\n  " + "\n  ".join(
        result.quiz_problems)


def test_chapters_have_self_checks(visit):
    without = [entry for entry in CHAPTERS if visit(entry).facts["quizzes"] == 0]
    assert not without, f"chapters with no self-check question on the site: {without}"


def test_folded_code_opens_on_request(open_page):
    # Cells tagged hide-input (drawing code only, see test_notebooks.py) show their figure and
    # a closed "Show code cell source" toggle; one click shows the code.
    entry = CHAPTERS[2] if len(CHAPTERS) > 2 else CHAPTERS[0]
    session = open_page(f"{entry}.html")
    page = session.page
    folded = page.locator(".cell.tag_hide-input")
    assert folded.count() > 0, f"{entry}.html has no folded drawing code"
    cell = folded.first
    toggle = cell.locator("details.hide.above-input")
    assert toggle.get_attribute("open") is None, "folded code must start closed"
    code = cell.locator(".cell_input pre")
    assert not code.is_visible()
    assert cell.locator(".cell_output img").first.is_visible(), "the figure shows without the code"
    toggle.locator("summary").click()
    code.first.wait_for(state="visible")
    assert "plt." in code.first.inner_text() or "ax." in code.first.inner_text()
    assert not session.problems(), f"{entry}.html:\n  " + "\n  ".join(session.problems())


def test_search_finds_momentum(open_page):
    session = open_page("search.html?q=momentum")
    page = session.page
    page.locator("#search-results h2", has_text="Search Results").wait_for(state="attached")
    results = page.locator("#search-results ul.search li")
    summary = page.locator("#search-results .search-summary").inner_text()
    assert results.count() > 0, f"the search page found nothing for 'momentum': {summary!r}"
    found = page.eval_on_selector_all("#search-results ul.search li a",
                                      "els => els.map(a => a.href)")
    pages = {urlsplit(u).path.lstrip("/").removesuffix(".html") for u in found}
    assert pages & set(PAGES), f"no result links to a page of the book: {found}"
    texts = [t.lower() for t in results.all_inner_texts()]
    assert any("momentum" in t for t in texts), f"no result shows the word: {texts[:3]}"
    assert not session.problems(), "search.html:\n  " + "\n  ".join(session.problems())


# --------------------------------------------------------------------------------------------
# Item 2: launch buttons


def _expected_launch_urls(entry: str) -> tuple[str, str]:
    repo = CONFIG["repository"]
    slug = repo["url"].removeprefix("https://github.com/").strip("/")
    branch = repo.get("branch", "main")
    path = f"{repo.get('path_to_book', '') or ''}".strip("/")
    notebook = f"{path}/{entry}.ipynb" if path else f"{entry}.ipynb"
    buttons = CONFIG["launch_buttons"]
    interface = {"jupyterlab": "lab/tree", "classic": "tree"}[
        buttons.get("notebook_interface", "classic")]
    binder = (f"{buttons['binderhub_url'].rstrip('/')}/v2/gh/{slug}/{branch}"
              f"?urlpath={interface}/{notebook}")
    colab = f"{buttons['colab_url'].rstrip('/')}/github/{slug}/blob/{branch}/{notebook}"
    return binder, colab


@pytest.mark.parametrize("entry", CHAPTERS)
def test_launch_buttons_open_this_chapters_notebook(visit, entry):
    binder, colab = _expected_launch_urls(entry)
    assert (ROOT / f"{entry}.ipynb").is_file()
    facts = visit(entry).facts
    hosts = {name: urlsplit(CONFIG["launch_buttons"][name]).netloc
             for name in ("binderhub_url", "colab_url")}
    for name, want in (("binderhub_url", binder), ("colab_url", colab)):
        on_page = [u for u in facts["links"] if urlsplit(u).netloc == hosts[name]]
        in_menu = [u for u in facts["launchLinks"] if urlsplit(u).netloc == hosts[name]]
        # The exercise cards ("How to run this exercise") link to the same notebook.
        assert set(on_page) == {want}, f"{entry}.html: links to {hosts[name]}: {on_page}, want {want}"
        assert in_menu == [want], f"{entry}.html: the launch menu has {in_menu}, want {want}"


# --------------------------------------------------------------------------------------------
# Details readers notice: the built HTML, no browser needed

OUTPUT_BLEMISHES = {
    "a traceback": re.compile(r"Traceback \(most recent call last\)"),
    "a Python warning": re.compile(r"\b\w*Warning: "),
    "a figure repr": re.compile(r"<Figure size [\d.]+x[\d.]+ with \d+ Axes>"),
    "an object repr": re.compile(r"<[\w.]+(?: object)? at 0x[0-9a-fA-F]+>"),
    "a matplotlib Text repr": re.compile(r"\bText\([-\d.e]+, [-\d.e]+, '"),
}


@pytest.mark.parametrize("entry", PAGES)
def test_outputs_show_no_warnings_tracebacks_or_reprs(built_site, entry):
    soup = BeautifulSoup((built_site / f"{entry}.html").read_text(), "html.parser")
    found = []
    for output in soup.select(".cell_output, .output"):
        classes = output.get("class", [])
        if "traceback" in classes or "error" in classes:
            found.append(f"an error output: {output.get_text()[:120]!r}")
        text = output.get_text()
        for what, pattern in OUTPUT_BLEMISHES.items():
            if match := pattern.search(text):
                found.append(f"{what}: {text[max(0, match.start() - 40):match.end() + 60]!r}")
    assert not found, f"{entry}.html shows in its outputs:\n  " + "\n  ".join(sorted(set(found)))


# --------------------------------------------------------------------------------------------
# Issue 12: the website as a learner meets it: sliders, self-checks, layout


@pytest.mark.parametrize("entry", CHAPTERS)
def test_sliders_change_the_picture_with_no_kernel(open_page, entry):
    """Every slider, moved by keyboard and by mouse, shows that stop's picture and alt text."""
    session = open_page(f"{entry}.html")
    page = session.page
    settle(page)
    dead = page.locator(".widget-slider, .jupyter-widget-slider")
    assert dead.count() == 0, (
        f"{entry}.html has {dead.count()} ipywidgets slider(s): on the static site they move "
        "but nothing redraws. Use course_lib.page.slider.picture_slider (kernel-free).")
    sliders = page.locator(".course-slider")
    for number in range(sliders.count()):
        slider = sliders.nth(number)
        data = json.loads(slider.locator("script[type='application/json']").text_content())
        control = slider.locator("input[type='range']")
        image, readout = slider.locator("img"), slider.locator("output")
        label = slider.locator("label").inner_text()
        where = f"{entry}.html, slider {label!r}"
        n = len(data["srcs"])
        assert n >= 2, f"{where}: a slider needs at least two stops"
        assert len(set(data["srcs"])) == n, f"{where}: two stops store the same picture"

        def shown():
            return {"k": int(control.input_value()), "src": image.get_attribute("src"),
                    "alt": image.get_attribute("alt"), "readout": readout.inner_text(),
                    "valuetext": control.get_attribute("aria-valuetext")}

        def assert_at(state, k, how):
            assert state["k"] == k, f"{where}: after {how} the slider is at stop {state['k']}"
            assert state["src"] == data["srcs"][k], f"{where}: after {how} the picture is not stop {k}'s"
            assert state["alt"] == data["alts"][k], f"{where}: after {how} the alt text is not stop {k}'s"
            assert state["readout"] == data["readouts"][k], f"{where}: readout {state['readout']!r}"
            assert state["valuetext"] == f"{label} = {data['readouts'][k]}", where

        start = shown()
        assert_at(start, start["k"], "loading")
        control.focus()
        key = "ArrowRight" if start["k"] < n - 1 else "ArrowLeft"
        control.press(key)
        moved = shown()
        assert_at(moved, start["k"] + (1 if key == "ArrowRight" else -1), key)
        assert moved["src"] != start["src"] and moved["alt"] != start["alt"], (
            f"{where}: the slider moved but the picture or its alt text stayed")
        control.press("End")
        assert_at(shown(), n - 1, "End")
        control.press("Home")
        assert_at(shown(), 0, "Home")
        # A click near the right end of the track, as a mouse would.
        box = control.bounding_box()
        page.mouse.click(box["x"] + box["width"] - 3, box["y"] + box["height"] / 2)
        assert_at(shown(), n - 1, "a click at the right end of the track")
        slider.screenshot(path=str(SCREENSHOTS / f"{entry.replace('/', '__')}__slider-{number}.png"))
    assert not session.problems(), f"{entry}.html:\n  " + "\n  ".join(session.problems())


def test_the_course_has_kernel_free_sliders(visit):
    counts = {entry: visit(entry).facts["sliders"] for entry in CHAPTERS}
    assert sum(counts.values()) >= 6, f"kernel-free sliders per chapter: {counts}"


def quiz_questions(html_text: str) -> list[dict]:
    """The self-check questions stored in a built page, in the order jupyterquiz shows them."""
    found = []
    for match in re.finditer(r"var questions\w+=", html_text):
        questions, _ = json.JSONDecoder().raw_decode(html_text[match.end():])
        found += questions
    return found


@pytest.mark.parametrize("entry", CHAPTERS)
def test_right_answer_position_varies_across_each_chapter(visit, built_site, entry):
    """Option order tells nothing: the right answer sits at different places in a chapter."""
    shown = [q for q in visit(entry).facts["quizRight"] if q["right"]]
    stored = [q for q in quiz_questions((built_site / f"{entry}.html").read_text())
              if q["type"] in ("multiple_choice", "many_choice")]
    assert [q["right"] for q in shown] == [[a["correct"] for a in q["answers"]] for q in stored], (
        f"{entry}.html: the options on the page are not in their stored order")
    single = [q["right"].index(True) for q in shown if not q["many"]]
    n_options = min((len(q["right"]) for q in shown if not q["many"]), default=0)
    want = min(len(single), n_options)
    assert len(set(single)) >= want, (
        f"{entry}.html: the right answers of its {len(single)} single-choice questions sit at "
        f"positions {[p + 1 for p in single]}; a reader can pass by position. "
        "course_lib.page.selfcheck.show places them; do not reorder its output.")
    for q in shown:
        if q["many"]:
            k = sum(q["right"])
            assert q["right"] != [True] * k + [False] * (len(q["right"]) - k), (
                f"{entry}.html: the right answers come first in {q['question']!r}")


@pytest.mark.parametrize("entry", CHAPTERS)
def test_right_answer_is_not_given_away_by_its_length(built_site, entry):
    """Distractors are as long and specific as the answer: length does not point to it."""
    single = [q for q in quiz_questions((built_site / f"{entry}.html").read_text())
              if q["type"] == "multiple_choice"]
    longest, too_long = 0, []
    for q in single:
        right = next(len(a["answer"]) for a in q["answers"] if a["correct"])
        wrong = max(len(a["answer"]) for a in q["answers"] if not a["correct"])
        longest += right > wrong
        if right > 1.3 * wrong + 10:
            too_long.append(f"{q['question'][:60]!r}: the answer has {right} characters, the "
                            f"longest distractor {wrong}")
    assert not too_long, (f"{entry}.html: right answers much longer than every distractor "
                          "(make the distractors as long and plausible):\n  "
                          + "\n  ".join(too_long))
    assert longest <= len(single) / 2, (
        f"{entry}.html: the right answer is the longest option in {longest} of {len(single)} "
        "single-choice questions")


@pytest.mark.parametrize("entry", PAGES)
def test_self_checks_show_no_raw_markdown(visit, entry):
    facts = visit(entry).facts
    assert not facts["quizBackticks"], (
        f"{entry}.html: self-check text with literal backticks (Markdown that was not "
        f"rendered): {facts['quizBackticks']}")
    assert not any("`" in a for a in visit(entry).quiz_feedback), (
        f"{entry}.html: feedback with literal backticks: "
        f"{[a for a in visit(entry).quiz_feedback if '`' in a][:3]}")


@pytest.mark.parametrize("entry", PAGES)
def test_nothing_is_wider_than_the_column_at_1280px(visit, entry):
    layout = visit(entry).layout
    problems = (
        [f"display equation wider than the {layout['column']} px column: {m}"
         for m in layout["wideMath"]]
        + [f"table wider than the column: {t}" for t in layout["wideTables"]]
        + [f"needs sideways scrolling: {b}" for b in layout["scrollingBlocks"]]
        + [f"reaches past the column: {c}" for c in layout["clipped"]]
    )
    assert not problems, f"{entry}.html at 1280 px:\n  " + "\n  ".join(problems)


@pytest.mark.parametrize("entry", PAGES)
def test_a_phone_never_scrolls_the_page_sideways(visit_phone, entry):
    result = visit_phone(entry)
    layout = result.layout
    assert layout["pageOverflow"] <= 0, (
        f"{entry}.html on a 390 px phone scrolls sideways by {layout['pageOverflow']} px")
    assert not layout["clipped"], (
        f"{entry}.html on a 390 px phone: content past the screen's edge outside a scrolling "
        "box:\n  " + "\n  ".join(layout["clipped"]))
    assert not result.problems, f"{entry}.html on a phone:\n  " + "\n  ".join(result.problems)


# --------------------------------------------------------------------------------------------
# Issue 23: the site for every reader: a phone, a keyboard, a screen reader, dark mode


@pytest.mark.parametrize("entry", PAGES)
def test_accessibility_audit_finds_no_serious_violation(visit, entry):
    found = visit(entry).accessibility
    assert not found, (f"{entry}.html: axe-core (WCAG 2.1 A/AA) finds {len(found)} critical "
                       "or serious violation(s):\n  " + "\n  ".join(found[:15]))


@pytest.mark.parametrize("entry", PAGES)
def test_nothing_a_learner_needs_hides_on_a_phone(visit_phone, entry):
    reading = visit_phone(entry).reading
    problems = (
        [f"display equation wider than the column: {e}" for e in reading["wideEquations"]]
        + [f"scrolls sideways with no visible hint: {b}" for b in reading["uncued"]]
        + [f"picture shrunk with no full-size button: {p}" for p in reading["tinyPictures"]]
    )
    assert not problems, (f"{entry}.html on a 390 px phone (break a long equation into "
                          "aligned lines; book/_static/course.js gives the rest their cue):\n  "
                          + "\n  ".join(problems))


def test_self_checks_work_with_the_keyboard_alone(open_page):
    """Options chosen with Space and the arrow keys, a number typed and checked with Tab and
    Enter: each gives its feedback in a live region a screen reader announces."""
    # A chapter with a numeric question (in the notebook's JSON: "type": \"numeric\").
    entry = next(e for e in CHAPTERS if 'numeric\\"' in (ROOT / f"{e}.ipynb").read_text())
    session = open_page(f"{entry}.html")
    page = session.page
    settle(page)
    choice = page.locator(".Quiz:has(.MCButton)").first
    feedback = choice.locator(".Feedback")
    assert feedback.get_attribute("role") == "status"
    choice.locator("input[type='radio']").first.focus()
    page.keyboard.press("Space")
    first = " ".join(feedback.inner_text().split())
    assert first, f"{entry}.html: Space on an option gave no feedback"
    page.keyboard.press("ArrowDown")
    second = " ".join(feedback.inner_text().split())
    assert second and second != first, f"{entry}.html: the arrow key did not choose the next option"

    numeric = page.locator(".Quiz:has(input.Input-text)").first
    box = numeric.locator("input.Input-text")
    label = box.evaluate(
        "b => b.labels.length ? b.labels[0].innerText : b.getAttribute('aria-label')")
    assert label and label.strip(), f"{entry}.html: the numeric answer box has no label"
    box.focus()
    page.keyboard.type("987654321")
    page.keyboard.press("Tab")
    focused = page.evaluate("() => document.activeElement.textContent")
    assert focused == "Check", f"{entry}.html: Tab after the answer lands on {focused!r}"
    page.keyboard.press("Enter")
    answer = numeric.locator(".Feedback")
    assert " ".join(answer.inner_text().split()), f"{entry}.html: Check gave no feedback"
    assert answer.get_attribute("role") == "status"
    assert not session.problems(), f"{entry}.html:\n  " + "\n  ".join(session.problems())


def test_a_wide_figure_opens_at_full_size_with_the_keyboard(open_page):
    entry = CHAPTERS[-1] if len(CHAPTERS) < 7 else CHAPTERS[6]
    session = open_page(f"{entry}.html", phone=True)
    page = session.page
    settle(page)
    page.wait_for_function("() => document.querySelector('.course-full-size:not([hidden])')")
    button = page.locator(".course-full-size:not([hidden])").first
    picture = button.evaluate("b => ({src: b.previousElementSibling.src, "
                              "alt: b.previousElementSibling.alt})")
    button.focus()
    page.keyboard.press("Enter")
    dialog = page.locator("dialog.course-figure-dialog")
    assert dialog.evaluate("d => d.open"), f"{entry}.html: Enter did not open the picture"
    big = dialog.locator("img")
    assert big.get_attribute("src") == picture["src"]
    assert big.get_attribute("alt") == picture["alt"]
    width = big.evaluate("img => img.getBoundingClientRect().width")
    assert width >= big.evaluate("img => img.naturalWidth") - 1, "shown smaller than drawn"
    assert page.evaluate("() => document.activeElement.textContent") == "Close"
    dialog.screenshot(path=str(SCREENSHOTS / f"{entry.replace('/', '__')}__full-size.png"))
    page.keyboard.press("Escape")
    assert not dialog.evaluate("d => d.open"), "Escape did not close the picture"
    assert not session.problems(), f"{entry}.html:\n  " + "\n  ".join(session.problems())


# In dark mode the page is dark: a figure (drawn on white, with black text) needs its white
# card, code its theme colors, a self-check its own colors. The contrast of code and of the
# answer box's label is measured; the rest is for a person to see in the screenshots.
DARK_JS = r"""() => {
  const rgb = c => (c.match(/[\d.]+/g) || []).slice(0, 3).map(Number);
  const lum = c => { const v = rgb(c).map(x => x / 255)
                       .map(x => x <= 0.03928 ? x / 12.92 : ((x + 0.055) / 1.055) ** 2.4);
                     return 0.2126 * v[0] + 0.7152 * v[1] + 0.0722 * v[2]; };
  const ratio = (a, b) => { const [h, l] = [lum(a), lum(b)].sort((x, y) => y - x);
                            return (h + 0.05) / (l + 0.05); };
  const background = e => { for (; e; e = e.parentElement) {
      const c = getComputedStyle(e).backgroundColor;
      if (c && !c.startsWith('rgba(0, 0, 0, 0)') && c !== 'transparent') return c; }
    return 'rgb(255, 255, 255)'; };
  const article = document.querySelector('article.bd-article');
  const pictures = [...article.querySelectorAll(
      'div.cell_output img, figure img, .course-slider img')]
    .filter(img => img.getBoundingClientRect().height > 0);
  const code = [...article.querySelectorAll(
      'div.highlight pre, div.cell_output pre, .Quiz .InpLabel')]
    .filter(e => e.getBoundingClientRect().height > 0 && (e.innerText || '').trim());
  return {
    dark: document.documentElement.dataset.theme,
    bareFigures: pictures.filter(img => background(img) !== 'rgb(255, 255, 255)')
                         .map(img => (img.alt || img.src).slice(0, 60)),
    faintText: code.map(e => [e, ratio(getComputedStyle(e).color, background(e))])
                   .filter(([, r]) => r < 4.5)
                   .map(([e, r]) => `${r.toFixed(2)}:1 ${(e.innerText || '').trim().slice(0, 50)}`),
  };
}"""


@pytest.mark.parametrize("entry", CHAPTERS)
def test_dark_mode_keeps_figures_code_and_self_checks_readable(open_page, entry):
    session = open_page(f"{entry}.html", dark=True)
    page = session.page
    settle(page)
    page.screenshot(path=str(SCREENSHOTS / f"{entry.replace('/', '__')}__dark.png"),
                    full_page=True)
    found = page.evaluate(DARK_JS)
    session.context.close()
    assert found["dark"] == "dark", f"{entry}.html did not switch to dark mode"
    assert not found["bareFigures"], (
        f"{entry}.html in dark mode: figures without their white card: {found['bareFigures']}")
    assert not found["faintText"], (
        f"{entry}.html in dark mode: text below 4.5:1 contrast: {found['faintText'][:5]}")

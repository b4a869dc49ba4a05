#!/usr/bin/env python3
"""Renders chat templates the way transformers' apply_chat_template does (jinja2's sandboxed environment
with trim_blocks and lstrip_blocks, the loopcontrols extension, raise_exception, a tojson filter that keeps
non-ASCII), to write down the expected strings of test/chat-template.test.ts.

    python3 test/utils/chat-template-reference.py TEMPLATE_FILE_OR_- MESSAGES_JSON ADD_GENERATION_PROMPT(0|1) SPECIAL_JSON

Prints the rendered text as a JSON string, or {"error": message} when the template raises.
"""
import json
import sys

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment


class TemplateError(Exception):
    pass


def raise_exception(message):
    raise TemplateError(message)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def main():
    src = sys.stdin.read() if sys.argv[1] == '-' else open(sys.argv[1], encoding='utf-8').read()
    messages = json.loads(sys.argv[2])
    add_generation_prompt = sys.argv[3] == '1'
    special = json.loads(sys.argv[4])
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    env.filters['tojson'] = tojson
    env.globals['raise_exception'] = raise_exception
    try:
        out = env.from_string(src).render(messages=messages, add_generation_prompt=add_generation_prompt, **special)
        print(json.dumps(out))
    except TemplateError as e:
        print(json.dumps({'error': str(e)}))


if __name__ == '__main__':
    main()

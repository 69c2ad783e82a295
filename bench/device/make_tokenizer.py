#!/usr/bin/env python3
"""Write a tokenizer-only GGUF: every KV field of SmolLM2-135M-Instruct's GGUF, no tensors.
write_dense() reads only tokenizer.* metadata from it. Usage: make_tokenizer.py OUT.gguf"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from gguf import GGUFReader, GGUFValueType, GGUFWriter

from services.runner.models import resolve

src = resolve("SmolLM2-135M-Instruct", Path("/tmp")).path
reader = GGUFReader(src)
writer = GGUFWriter(sys.argv[1], str(bytes(reader.fields["general.architecture"].parts[-1]).decode()))
for key, field in reader.fields.items():
    if key.startswith("GGUF.") or key == "general.architecture":
        continue
    kind = field.types[0]
    if kind == GGUFValueType.ARRAY:
        item = field.types[1]
        values = [bytes(field.parts[i]).decode() if item == GGUFValueType.STRING else field.parts[i].tolist()[0] for i in field.data]
        writer.add_key_value(key, values, kind, sub_type=item)
    elif kind == GGUFValueType.STRING:
        writer.add_string(key, bytes(field.parts[field.data[0]]).decode())
    else:
        writer.add_key_value(key, field.parts[field.data[0]].tolist()[0], kind)
writer.write_header_to_file()
writer.write_kv_data_to_file()
writer.write_ti_data_to_file()
writer.close()
print(f"{sys.argv[1]}: from {src}")

"""A seccomp filter's verdicts, read by running its classic BPF program (tests only).

runc does not compile Docker's profile to the same bytes every time (its rule order
varies between starts: three layouts in 12 compiles here), so two filters are compared
by what they answer, over every system call number of three architectures and argument
values the profile's conditions look at.
"""

from __future__ import annotations

import struct

AUDIT_ARCH_X86_64 = 0xC000003E
AUDIT_ARCH_I386 = 0x40000003
AUDIT_ARCH_AARCH64 = 0xC00000B7  # not in the profile: the filter's answer for a foreign one
X32_BIT = 0x40000000
# First arguments the profile's conditions test (clone's namespace flags, personality's).
FIRST_ARGS = (0, 0x7E020000, 0x11, 0x10000, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)


def verdict(program: bytes, nr: int, arch: int, first_arg: int) -> int:
    """What the filter returns for one system call (seccomp_data: nr, arch, ip, args)."""
    code_at = [struct.unpack_from("<HBBI", program, at) for at in range(0, len(program), 8)]
    data = struct.pack("<iIQ6Q", nr, arch, 0, first_arg, 0, 0, 0, 0, 0)
    a = x = 0
    scratch = [0] * 16
    pc = 0
    while True:
        code, jt, jf, k = code_at[pc]
        pc += 1
        kind = code & 0x07
        if code == 0x20:  # ld [k]
            a = struct.unpack_from("<I", data, k)[0]
        elif code == 0x00:  # ld #k
            a = k
        elif code == 0x60:  # ld M[k]
            a = scratch[k]
        elif code == 0x61:  # ldx M[k]
            x = scratch[k]
        elif code == 0x01:  # ldx #k
            x = k
        elif code == 0x02:  # st M[k]
            scratch[k] = a
        elif code == 0x03:  # stx M[k]
            scratch[k] = x
        elif kind == 0x04:  # alu
            operand = x if code & 0x08 else k
            a = _alu(code & 0xF0, a, operand)
        elif kind == 0x05:  # jumps
            if code == 0x05:  # ja
                pc += k
                continue
            operand = x if code & 0x08 else k
            taken = {
                0x10: a == operand,
                0x20: a > operand,
                0x30: a >= operand,
                0x40: bool(a & operand),
            }[code & 0xF0]
            pc += jt if taken else jf
        elif code == 0x06:  # ret #k
            return k
        elif code == 0x16:  # ret a
            return a
        elif code == 0x07:  # tax
            x = a
        elif code == 0x87:  # txa
            a = x
        else:
            raise ValueError(f"BPF instruction {code:#x} not understood")


def _alu(operation: int, a: int, operand: int) -> int:
    if operation == 0x00:
        return (a + operand) & 0xFFFFFFFF
    if operation == 0x10:
        return (a - operand) & 0xFFFFFFFF
    if operation == 0x40:
        return a | operand
    if operation == 0x50:
        return a & operand
    if operation == 0x60:
        return (a << operand) & 0xFFFFFFFF
    if operation == 0x70:
        return a >> operand
    raise ValueError(f"BPF operation {operation:#x} not understood")


def verdicts(program: bytes) -> list[int]:
    """The filter's answers over the whole grid (see the module's docstring)."""
    numbers = [*range(0, 460), -1, 1000]
    x32 = [X32_BIT + number for number in range(0, 560)]
    grid = [(AUDIT_ARCH_X86_64, number) for number in numbers + x32]
    grid += [(AUDIT_ARCH_I386, number) for number in numbers]
    grid += [(AUDIT_ARCH_AARCH64, number) for number in (0, 63, 220)]
    return [verdict(program, number, arch, first) for arch, number in grid for first in FIRST_ARGS]

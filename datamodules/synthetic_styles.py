"""The synthetic GTZAN's musical material: scales, chords, progressions, rhythms, drum patterns,
instruments, and the genre styles that choose among them.

Data only, read by :mod:`datamodules.synthetic`, which renders clips from it. A genre's
character lives here; how a clip is rendered lives there.
"""

SCALES = {
    "major": [0, 2, 4, 5, 7, 9, 11], "minor": [0, 2, 3, 5, 7, 8, 10],
    "harmonic_minor": [0, 2, 3, 5, 7, 8, 11], "dorian": [0, 2, 3, 5, 7, 9, 10],
    "mixolydian": [0, 2, 4, 5, 7, 9, 10], "phrygian": [0, 1, 3, 5, 7, 8, 10],
    "blues": [0, 3, 5, 6, 7, 10], "major_pent": [0, 2, 4, 7, 9], "minor_pent": [0, 3, 5, 7, 10],
    "bebop": [0, 2, 4, 5, 7, 9, 10, 11],
}
CHORDS = {
    "maj": [0, 4, 7], "min": [0, 3, 7], "dom7": [0, 4, 7, 10], "maj7": [0, 4, 7, 11],
    "min7": [0, 3, 7, 10], "pow": [0, 7, 12], "min9": [0, 3, 7, 10, 14],
}
# Progressions: (root in semitones above the key, chord quality) per bar.
PROGRESSIONS = {
    "blues12": [(0, "dom7")] * 4 + [(5, "dom7")] * 2 + [(0, "dom7")] * 2
    + [(7, "dom7"), (5, "dom7"), (0, "dom7"), (7, "dom7")],
    "jazz": [(2, "min7"), (7, "dom7"), (0, "maj7"), (9, "dom7")],
    "jazz_minor": [(2, "min7"), (7, "dom7"), (0, "min9"), (5, "min7")],
    "pop": [(0, "maj"), (7, "maj"), (9, "min"), (5, "maj")],
    "pop2": [(9, "min"), (5, "maj"), (0, "maj"), (7, "maj")],
    "rock": [(0, "pow"), (10, "pow"), (5, "pow"), (0, "pow")],
    "rock2": [(0, "pow"), (5, "pow"), (7, "pow"), (5, "pow")],
    "metal": [(0, "pow"), (8, "pow"), (10, "pow"), (0, "pow")],
    "metal2": [(0, "pow"), (1, "pow"), (0, "pow"), (6, "pow")],
    "country": [(0, "maj"), (5, "maj"), (7, "maj"), (0, "maj")],
    "reggae": [(0, "min"), (5, "min")],
    "reggae2": [(0, "maj"), (5, "maj"), (7, "maj"), (5, "maj")],
    "disco": [(0, "min7"), (5, "min7")],
    "disco2": [(2, "min7"), (7, "dom7"), (0, "maj7"), (0, "maj7")],
    "hiphop": [(0, "min7"), (8, "maj7")],
    "hiphop2": [(0, "min7"), (5, "min7"), (8, "maj7"), (7, "dom7")],
    "classical": [(0, "maj"), (5, "maj"), (7, "dom7"), (0, "maj")],
    "classical2": [(9, "min"), (2, "min"), (7, "dom7"), (0, "maj")],
    "classical_minor": [(0, "min"), (5, "min"), (7, "dom7"), (0, "min")],
}
# Comping rhythms: attack steps in a 16-step bar, and the fraction of the gap a chord is held.
COMPS = {
    "pad": ([0], 1.0), "half": ([0, 8], 0.95), "eighths": (list(range(0, 16, 2)), 0.45),
    "sixteenths": (list(range(16)), 0.6), "skank": ([2, 6, 10, 14], 0.35),
    "strum": ([0, 4, 6, 8, 12, 14], 0.8), "stabs": ([2, 6, 10, 14], 0.5),
    "charleston": ([0, 6], 0.4), "comp": ([3, 6, 11], 0.4), "shuffle": ([0, 2, 4, 6, 8, 10, 12, 14], 0.6),
    "arp": (list(range(0, 16, 2)), 1.0), "arp16": (list(range(16)), 1.0),
}
# Drum patterns, 16 steps per bar: x = accent, o = soft, . = rest.
DRUMS = {
    "rock": {"kick": "x.....x.x.......", "snare": "....x.......x...", "hat": "x.x.x.x.x.x.x.x."},
    "rock2": {"kick": "x.......x.x.....", "snare": "....x.......x..o", "hat": "xoxoxoxoxoxoxoxo"},
    "metal": {"kick": "xxxxxxxxxxxxxxxx", "snare": "....x.......x...", "ride": "x...x...x...x..."},
    "blast": {"kick": "x.x.x.x.x.x.x.x.", "snare": ".x.x.x.x.x.x.x.x", "ride": "x.x.x.x.x.x.x.x."},
    "disco": {"kick": "x...x...x...x...", "snare": "....x.......x...", "hat": "x...x...x...x...",
              "open": "..x...x...x...x."},
    "pop": {"kick": "x.....x...x.....", "clap": "....x.......x...", "hat": "x.x.x.x.x.x.x.x."},
    "boombap": {"kick": "x......x..x.....", "snare": "....x.......x...", "hat": "x.x.x.x.x.x.x.x."},
    "trap": {"kick": "x.....x..x......", "clap": "........x.......", "hat": "xxxxxxxxxxxxxxxx"},
    "onedrop": {"kick": "........x.......", "rim": "........x.......", "hat": "x.x.x.x.x.x.x.x."},
    "steppers": {"kick": "x...x...x...x...", "rim": "........x.......", "hat": "..x...x...x...x."},
    "swing": {"ride": "x...x.x.x...x.x.", "hat": "....x.......x...", "kick": "o...o...o...o..."},
    "shuffle": {"kick": "x.......x.......", "snare": "....x.......x...", "hat": "x.x.x.x.x.x.x.x."},
    "train": {"kick": "x.......x.......", "brush": "oxoxoxoxoxoxoxox"},
    "twostep": {"kick": "x.......x.......", "snare": "....x.......x...", "hat": "..x...x...x...x."},
    "none": {},
}
# Harmonic amplitudes of each instrument's wavetable and its envelope:
# (attack s, decay time constant s (None = sustained), vibrato depth in semitones).
INSTRUMENTS = {
    "sine": ([1.0], (0.003, 0.5, 0.0)),
    "bass": ([1, 0.6, 0.3, 0.12, 0.05], (0.004, 0.45, 0.0)),
    "upright": ([1, 0.45, 0.1, 0.05], (0.004, 0.3, 0.0)),
    "synth_bass": ([1 / h for h in range(1, 14)], (0.004, 0.25, 0.0)),
    "organ": ([1, 0.8, 0.0, 0.6, 0.0, 0.3, 0.0, 0.4], (0.006, None, 0.0)),
    "epiano": ([1, 0.35, 0.08, 0.12, 0.02, 0.04], (0.003, 0.8, 0.0)),
    "piano": ([1 / h ** 1.4 for h in range(1, 14)], (0.002, 0.7, 0.0)),
    "strings": ([1 / h for h in range(1, 16)], (0.12, None, 0.12)),
    "flute": ([1, 0.25, 0.08, 0.03], (0.05, None, 0.1)),
    "reed": ([1, 0.2, 0.6, 0.1, 0.4, 0.1, 0.25, 0.05, 0.15], (0.02, None, 0.15)),
    "guitar": ([1, 0.7, 0.5, 0.35, 0.25, 0.15, 0.1, 0.08], (0.003, 0.9, 0.0)),
    "pluck": ([1 / h ** 0.8 for h in range(1, 16)], (0.002, 0.35, 0.0)),
    "square": ([1 / h if h % 2 else 0.0 for h in range(1, 14)], (0.01, None, 0.08)),
    "voice": ([1, 0.5, 0.6, 0.2, 0.1, 0.05], (0.04, None, 0.25)),
}
# Genre styles. Lists are the choices a clip draws from (earlier ones more often); pairs are
# (low, high) ranges: tempo in BPM, swing in 16th steps, melody density in notes per beat,
# distortion drive, room (reverb level). ``tone`` is (spectral tilt in dB/octave, high cut in
# Hz, signal-to-noise ratio in dB): the genre's typical recording. ``levels`` are the dB
# ranges of drums, bass, chords and melody, each first normalised to unit RMS.
# ``neighbours`` are the genres whose parts a clip may borrow.
GENRE_STYLES = {
    "blues": dict(
        tempo=(68, 110), swing=(0.45, 0.67), drums=["shuffle", "swing", "rock"],
        bass=["walk", "root8"], bass_inst=["bass", "upright"],
        prog=["blues12"], comp=["shuffle", "half", "comp"], chord_inst=["organ", "piano", "guitar"],
        scale=["blues", "minor_pent"], density=(0.75, 2), lead=["guitar", "reed", "voice"],
        drive=(0, 1.5), room=(0.1, 0.4), tone=(-3.0, (2500, 5500), (12, 25)),
        levels=((-8, -3), (-4, 0), (-4, 0), (0, 3)), neighbours=["jazz", "rock", "country"],
    ),
    "classical": dict(
        tempo=(56, 120), swing=(0, 0), drums=["none"],
        bass=["sustain", "none", "walk"], bass_inst=["strings", "upright"],
        prog=["classical", "classical2", "classical_minor"], comp=["pad", "arp", "arp16", "half"],
        chord_inst=["strings", "piano", "flute"],
        scale=["major", "harmonic_minor"], density=(1, 4), lead=["strings", "flute", "piano", "reed"],
        drive=(0, 0), room=(0.3, 0.7), tone=(-1.5, (8000, 11000), (30, 50)),
        levels=((-40, -40), (-10, -4), (-3, 1), (-2, 1)), neighbours=["jazz", "pop"],
    ),
    "country": dict(
        tempo=(85, 140), swing=(0, 0.2), drums=["train", "twostep", "rock"],
        bass=["rootfifth", "walk"], bass_inst=["bass", "upright"],
        prog=["country", "pop"], comp=["strum", "half", "eighths"], chord_inst=["pluck", "guitar", "piano"],
        scale=["major_pent", "major", "mixolydian"], density=(1, 2.5), lead=["strings", "pluck", "voice", "guitar"],
        drive=(0, 0.5), room=(0.05, 0.3), tone=(0.0, (6000, 11000), (20, 40)),
        levels=((-9, -4), (-5, -1), (0, 3), (-2, 1)), neighbours=["rock", "blues", "pop"],
    ),
    "disco": dict(
        tempo=(108, 132), swing=(0, 0.1), drums=["disco", "pop"],
        bass=["octave8", "root8"], bass_inst=["synth_bass", "bass"],
        prog=["disco", "disco2", "hiphop2"], comp=["stabs", "pad", "eighths"],
        chord_inst=["strings", "epiano", "square", "guitar"],
        scale=["dorian", "minor_pent", "minor"], density=(0.75, 2), lead=["strings", "voice", "square"],
        drive=(0, 0.5), room=(0.1, 0.35), tone=(1.2, (8000, 11000), (25, 45)),
        levels=((0, 3), (0, 4), (-5, -1), (-5, -1)), neighbours=["pop", "hiphop", "reggae"],
    ),
    "hiphop": dict(
        tempo=(78, 100), swing=(0.15, 0.45), drums=["boombap", "trap"],
        bass=["808", "sparse"], bass_inst=["sine", "bass"],
        prog=["hiphop", "hiphop2", "jazz_minor"], comp=["pad", "comp", "half"],
        chord_inst=["epiano", "piano", "strings", "organ"],
        scale=["minor_pent", "dorian", "minor"], density=(0.25, 1.25), lead=["epiano", "voice", "flute", "square"],
        drive=(0, 0.8), room=(0.05, 0.3), tone=(-1.2, (5000, 10000), (18, 35)),
        levels=((1, 5), (2, 6), (-9, -3), (-12, -5)), neighbours=["reggae", "pop", "disco"],
    ),
    "jazz": dict(
        tempo=(90, 200), swing=(0.45, 0.67), drums=["swing", "shuffle", "none"],
        bass=["walk"], bass_inst=["upright", "bass"],
        prog=["jazz", "jazz_minor", "blues12"], comp=["comp", "charleston", "pad"],
        chord_inst=["piano", "epiano", "organ"],
        scale=["bebop", "dorian", "mixolydian", "blues"], density=(1.5, 4), lead=["reed", "piano", "flute", "square"],
        drive=(0, 0), room=(0.15, 0.5), tone=(-1.5, (6000, 10000), (18, 35)),
        levels=((-8, -3), (-3, 0), (-5, -1), (0, 3)), neighbours=["blues", "classical", "hiphop"],
    ),
    "metal": dict(
        tempo=(120, 200), swing=(0, 0), drums=["metal", "blast", "rock2"],
        bass=["root16", "root8"], bass_inst=["bass", "synth_bass"],
        prog=["metal", "metal2", "rock"], comp=["sixteenths", "eighths", "pad"], chord_inst=["guitar"],
        scale=["harmonic_minor", "phrygian", "minor_pent"], density=(2, 4), lead=["guitar", "square"],
        drive=(4, 12), room=(0.05, 0.3), tone=(2.4, (8000, 11000), (25, 45)),
        levels=((-4, 0), (-9, -4), (1, 4), (-8, -2)), neighbours=["rock"],
    ),
    "pop": dict(
        tempo=(92, 128), swing=(0, 0.15), drums=["pop", "rock", "disco", "boombap"],
        bass=["root8", "sustain", "sparse"], bass_inst=["synth_bass", "bass", "sine"],
        prog=["pop", "pop2"], comp=["pad", "half", "eighths", "arp"],
        chord_inst=["piano", "strings", "square", "epiano", "guitar"],
        scale=["major", "major_pent"], density=(1, 2), lead=["voice", "square", "flute", "piano"],
        drive=(0, 1), room=(0.1, 0.35), tone=(1.2, (8000, 11000), (30, 50)),
        levels=((-4, 0), (-3, 1), (-4, 0), (0, 3)), neighbours=["disco", "rock", "hiphop", "country"],
    ),
    "reggae": dict(
        tempo=(64, 92), swing=(0, 0.3), drums=["onedrop", "steppers"],
        bass=["reggae", "sparse"], bass_inst=["bass", "sine"],
        prog=["reggae", "reggae2"], comp=["skank", "stabs"], chord_inst=["organ", "guitar", "piano", "pluck"],
        scale=["minor_pent", "major_pent", "dorian"], density=(0.5, 1.5), lead=["voice", "organ", "reed"],
        drive=(0, 0.3), room=(0.1, 0.45), tone=(-2.4, (5000, 9000), (20, 40)),
        levels=((-5, -1), (2, 6), (-7, -3), (-6, -1)), neighbours=["hiphop", "pop", "disco"],
    ),
    "rock": dict(
        tempo=(100, 160), swing=(0, 0.1), drums=["rock", "rock2", "twostep"],
        bass=["root8"], bass_inst=["bass", "synth_bass"],
        prog=["rock", "rock2", "pop"], comp=["eighths", "pad", "strum", "half"],
        chord_inst=["guitar", "organ", "piano"],
        scale=["minor_pent", "blues", "mixolydian"], density=(1, 3), lead=["guitar", "voice"],
        drive=(1.5, 6), room=(0.05, 0.3), tone=(0.0, (6000, 11000), (20, 40)),
        levels=((-3, 1), (-5, -1), (0, 3), (-4, 0)), neighbours=["metal", "country", "blues", "pop"],
    ),
}
# Which style fields are drawn together (and borrowed together from one neighbour).
PARTS = {
    "groove": ("tempo", "swing", "drums"),
    "bass": ("bass", "bass_inst"),
    "harmony": ("prog", "comp", "chord_inst"),
    "lead": ("scale", "density", "lead"),
    "sound": ("drive", "room", "levels", "tone"),
}

"""The Gateway's visible window: a real X client (Tk) titled "IB Gateway" showing the state."""

from __future__ import annotations

import contextlib
import tkinter

TITLE = "IB Gateway"
PANEL = "#8b1a1a"  # IB's dark red, so a VNC viewer or screenshot shows non-blank content


class XConnectionError(Exception):
    """No X server answers on $DISPLAY."""


class GatewayWindow:
    def __init__(self, subtitle: str) -> None:
        try:
            self._root = tkinter.Tk(className="ibgateway")
        except tkinter.TclError as e:
            raise XConnectionError(str(e)) from None
        self._root.title(TITLE)
        self._root.geometry("520x260+40+40")
        self._root.configure(background=PANEL)
        tkinter.Label(
            self._root, text=TITLE, font=("Helvetica", 20, "bold"), fg="white", bg=PANEL
        ).pack(pady=(24, 4))
        tkinter.Label(self._root, text=subtitle, fg="#f0d0d0", bg=PANEL).pack()
        self._state = tkinter.Label(
            self._root,
            text="Starting",
            font=("Helvetica", 14),
            fg="white",
            bg=PANEL,
            wraplength=480,
        )
        self._state.pack(pady=24, fill="x")
        self._root.protocol("WM_DELETE_WINDOW", lambda: None)  # closing is File>Close only
        self.pump()

    def show(self, state: str) -> None:
        self._state.configure(text=state)

    def pump(self) -> None:
        """Process pending X events; called often from the event loop."""
        self._root.update()

    def close(self) -> None:
        with contextlib.suppress(tkinter.TclError):
            self._root.destroy()

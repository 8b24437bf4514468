"""Fixed sentence sets for the speech benchmarks and tests: what users say to a voice agent.

`ASKED` are things people ask the demo agent and agents like it (the time, the date, help,
bookings, orders, support); `PAUSED` are sentences with a hesitation inside, written with a
comma where the speaker stops, so the voice reaches the pause with the rising, unfinished
intonation of a sentence that goes on (a phrase synthesised on its own ends as if finished).
"""

import re

ASKED = [
    "What time is it?",
    "What is the date today?",
    "Hello, how are you?",
    "Can you help me?",
    "Thank you very much.",
    "Good morning.",
    "Goodbye, see you later.",
    "What can you do?",
    "How does this work?",
    "Can you help me book a table for two tonight?",
    "I would like to order a large pizza.",
    "What is the weather like today?",
    "Is it going to rain tomorrow?",
    "Please call me back in ten minutes.",
    "I need to change my password.",
    "My order has not arrived yet.",
    "Can I speak to a real person?",
    "How much does it cost?",
    "Where is the nearest train station?",
    "Set an alarm for seven in the morning.",
    "Play some music please.",
    "Turn off the lights in the kitchen.",
    "What is my account balance?",
    "I want to cancel my subscription.",
    "Send a message to my mother.",
    "How long will the delivery take?",
    "Do you have any tables free on Friday?",
    "I would like a refund please.",
    "What are your opening hours?",
    "Can you repeat that?",
    "That is not what I said.",
    "Yes, that is right.",
    "No, thank you.",
    "I am looking for a hotel near the airport.",
    "Book a taxi to the city center.",
    "How many people are coming to the meeting?",
    "Remind me to buy milk on the way home.",
    "What is the capital of France?",
    "Tell me a joke.",
    "How far is it to London?",
    "Can I pay by credit card?",
    "The internet is not working in my house.",
    "I lost my bank card yesterday.",
    "Please check the status of my flight.",
    "What time does the store close tonight?",
    "I would like to make an appointment with the doctor.",
    "Is there a parking space near the office?",
    "Could you speak a little slower?",
    "My phone number has changed.",
    "Have a nice day.",
    "What did I ask you last time?",
    "Start again from the beginning.",
]

PAUSED = [
    "I would like to book a table for, four people tonight.",
    "Can you tell me the, weather in London tomorrow?",
    "My name is John and, I live in Paris.",
    "I want to go to the, train station in the morning.",
    "Could you send the invoice to, my office address?",
    "I need a taxi at, seven in the evening.",
    "Please remind me to call, my sister on Sunday.",
    "The package was supposed to arrive on, Tuesday afternoon.",
    "I am looking for a restaurant with, a view of the river.",
    "Can you check whether the flight to, Berlin is on time?",
    "I would like to order two, large pizzas with cheese.",
    "My account number is, one two three four.",
    "We are going to need a room for, three nights next week.",
    "Could you play the song that, we heard yesterday?",
    "I think the problem is with, the router in the hallway.",
    "Please move my appointment to, Thursday at ten.",
    "I lost my card somewhere near, the shopping center.",
    "Tell me how long it takes to, drive to the coast.",
    "I would like to pay with, my credit card please.",
    "Can you turn on the lights in, the living room?",
    "The meeting has been moved to, the second floor.",
    "I want to cancel the order I made, last Friday.",
    "Is there a pharmacy open near, the main square?",
    "Set a timer for, twenty five minutes.",
]


def words(text: str) -> list[str]:
    """Lower case, punctuation gone: how transcripts are compared."""
    return re.sub(r"[^a-z' ]", " ", text.lower()).split()


def edit_distance(ref: list[str], hyp: list[str]) -> int:
    """Word substitutions, deletions and insertions turning `ref` into `hyp` (Levenshtein)."""
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1]


# Held out: written after the turn-end decision was tuned on ASKED and PAUSED, never used to
# choose a threshold; the same kinds, so a rule that only fits the sets above shows here.
# Many end in, or pause around, numbers and units and words with a stop inside ("minutes",
# "ticket", "doctor"), where a short silence falls inside a word.
ASKED_HELD_OUT = [
    "Set an alarm for seven.",
    "I need a table for two.",
    "My room number is four one two.",
    "Can I get a ticket?",
    "What is the best route to the airport?",
    "Call me back in ten minutes.",
    "I want to talk to the doctor.",
    "Is the pharmacy open on Sunday?",
    "How much is a return ticket to Paris?",
    "I would like two coffees please.",
    "Where can I park my car?",
    "What is the password for the wifi?",
    "Cancel my appointment for tomorrow.",
    "The heating is not working.",
    "Can you book it for eight thirty?",
    "I will be there in twenty minutes.",
    "Do you deliver on weekends?",
    "Let me think about it.",
    "That sounds great, thanks.",
    "Which platform does the train leave from?",
    "I have a question about my bill.",
    "Add milk to my shopping list.",
    "How old is the Eiffel Tower?",
    "Please text me the address.",
]

PAUSED_HELD_OUT = [
    "Call me back in ten, minutes please.",
    "It takes about twenty, minutes by car.",
    "Set a timer for, fifteen minutes.",
    "I need to see the, doctor this afternoon.",
    "Book me a ticket to, Manchester for Monday.",
    "The train leaves at, eight thirty tomorrow.",
    "Can you order some, chicken nuggets for dinner?",
    "I would like to speak to, the manager please.",
    "My flight number is, two four six eight.",
    "Please add three, kilos of potatoes to the list.",
    "We need a table for, six at eight o'clock.",
    "Can you remind me about the, dentist next week?",
    "I am calling about my, internet contract.",
    "Could you tell me when the, museum opens on Saturday?",
    "I would like to get a, pepperoni pizza delivered.",
    "The package should be delivered to, the back door.",
    "I think I left my, jacket at the restaurant.",
    "Can you turn the volume up by, ten percent?",
    "Please transfer fifty, dollars to my savings account.",
    "I want to book a, double room with a balcony.",
    "The meeting starts at, quarter past two.",
    "Is it possible to change my, seat to the window?",
    "Can you find me a cheap, hotel near the station?",
    "Tell my boss that I will be, late this morning.",
]

# Held out, second set: written (2026-11-30, issue 13) before the rules of that day were chosen
# and never used to choose them; reported apart from the sets above (bench/endpointing.py).
# Same kinds of pause: after function words, inside numbers and before units, after verbs.
ASKED_HELD_OUT_2 = [
    "Wake me up at six thirty.",
    "Can you spell that for me?",
    "I would like the chicken salad.",
    "How many steps did I walk today?",
    "Where did I park the car?",
    "Order a pizza for eight people.",
    "Is the bank open at nine?",
    "Thanks, that is all for now.",
    "What does this word mean?",
    "Find me a flight to Rome.",
]

PAUSED_HELD_OUT_2 = [
    "I would like to reserve a, table near the window.",
    "Please wake me up at, six fifteen tomorrow.",
    "The parcel weighs about, three kilos.",
    "Can you tell me if the, library is open today?",
    "I am waiting for the, bus to the airport.",
    "Put the meeting on my, calendar for Wednesday.",
    "The film starts in, forty minutes.",
    "Could you read me the, latest news headlines?",
    "I need to buy a present for, my daughter's birthday.",
    "Turn the heating down to, nineteen degrees.",
    "My daughter is, seven years old.",
    "Send the photos to, my brother in Canada.",
]

# Held out, third set: written (2026-11-30) after the second set's figures were printed and
# before its cut sentences were read, for any rule chosen after that reading.
ASKED_HELD_OUT_3 = [
    "Can you call a plumber for me?",
    "What is on my calendar tomorrow?",
    "I would like to check out now.",
    "How much is the parking per hour?",
    "Please close the garage door.",
    "Is breakfast included?",
]

PAUSED_HELD_OUT_3 = [
    "I would like to change the, delivery address.",
    "Can you recommend a good, Italian restaurant nearby?",
    "The battery is at, twelve percent.",
    "I forgot to bring my, passport to the airport.",
    "Please set the oven to, two hundred degrees.",
    "We are meeting at the, coffee shop downtown.",
    "Could you check if my, parcel has been shipped?",
    "I want to book a flight for, two adults and a child.",
    "Remind me to water the, plants every Monday.",
    "The store closes in, thirty minutes.",
    "Can I get a glass of, orange juice please?",
    "My appointment is on, the fourteenth of March.",
]
